//! One replica: opens the log store and the state machine, starts openraft over the network, forms
//! the group on first start when asked to, and serves clients and peers on one port.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use openraft::{BasicNode, SnapshotPolicy};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::log_store::LogStore;
use crate::network::{serve_peer, Isolation, Network, RPC_MAGIC};
use crate::replica::Node;
use crate::session::serve_client;
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Raft};

/// How a node is started (`redcount raft-node`).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id in `peers`.
    pub id: NodeId,
    /// Log, vote, snapshot and the private Redis's files.
    pub dir: PathBuf,
    /// `host:port` for clients and peers.
    pub listen: String,
    /// Every member, this one included: id -> `host:port`.
    pub peers: BTreeMap<NodeId, String>,
    /// Where this node dials some peers instead of their `peers` address (a NAT, a tunnel, the
    /// network tests' fault proxies). Clients are still told the `peers` addresses.
    pub dial: BTreeMap<NodeId, String>,
    /// Form the group if this node has never been in one (first start of a new group).
    pub init: bool,
    /// Clients must AUTH with this.
    pub password: Option<String>,
    /// Timing: heartbeat and election timeouts in ms.
    pub heartbeat_ms: u64,
    /// Election timeout range (ms).
    pub election_ms: (u64, u64),
    /// A snapshot is taken after this many log entries.
    pub snapshot_every: u64,
    /// Confirm leadership with a quorum round of its own for every read, instead of one round
    /// shared by the reads waiting for it (`read_barrier.rs`); for measuring what sharing saves.
    pub unbatched_reads: bool,
}

impl NodeConfig {
    /// Defaults tuned for a loopback or LAN group: a leader's death is noticed within 0.35-0.7 s.
    /// (openraft 0.9 also gives each AppendEntries one heartbeat interval to complete, which is why
    /// the heartbeat is not shorter and replication sends bounded batches; see `log_store.rs`.)
    pub fn new(id: NodeId, dir: PathBuf, listen: String, peers: BTreeMap<NodeId, String>) -> Self {
        NodeConfig {
            id,
            dir,
            listen,
            peers,
            dial: BTreeMap::new(),
            init: false,
            password: None,
            heartbeat_ms: 100,
            election_ms: (350, 700),
            snapshot_every: 2000,
            unbatched_reads: false,
        }
    }
}

/// A stable 40-hex id for the group, from its member list.
fn group_id(peers: &BTreeMap<NodeId, String>) -> String {
    let text: String = peers.iter().map(|(id, a)| format!("{id}={a},")).collect();
    let mut out = String::new();
    for seed in 0..5u64 {
        // FNV-1a, seeded five times for 160 bits; an id, not a security measure.
        let mut h: u64 = 0xcbf29ce484222325 ^ seed;
        for b in text.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        out.push_str(&format!("{:08x}", h as u32));
    }
    out
}

/// Runs a node until the process is stopped or Raft fails fatally.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let Some(secret) = config.password.clone().filter(|p| !p.is_empty()) else {
        anyhow::bail!(
            "a Raft node needs --requirepass-file: the same secret authenticates clients and the \
             group's peers (`redcount cluster up --raft N` writes one)"
        );
    };
    if !config.peers.contains_key(&config.id) {
        anyhow::bail!(
            "--peers does not list this node's id {}; list every member as id=host:port",
            config.id
        );
    }
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let log = LogStore::open(&config.dir)?;
    let sm = StateMachine::open(&config.dir).await?;
    let raft_config = openraft::Config {
        cluster_name: "redcount".into(),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.election_ms.0,
        election_timeout_max: config.election_ms.1,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.snapshot_every / 2,
        install_snapshot_timeout: 5_000,
        ..Default::default()
    }
    .validate()
    .map_err(|e| anyhow::anyhow!("raft settings: {e}"))?;
    let isolation = Isolation::default();
    let network = Network {
        isolation: isolation.clone(),
        dial: Arc::new(config.dial.clone()),
        secret: Arc::new(secret.into_bytes()),
    };
    let raft = Raft::new(config.id, Arc::new(raft_config), network, log, sm.clone())
        .await
        .map_err(|e| anyhow::anyhow!("starting raft: {e}"))?;
    if config.init && !raft.is_initialized().await? {
        let members: BTreeMap<NodeId, BasicNode> = config
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
            .collect();
        if let Err(e) = raft.initialize(members).await {
            tracing::info!("group already formed ({e})");
        }
    }
    let node = Arc::new(Node {
        id: config.id,
        raft: raft.clone(),
        sm,
        isolation,
        password: config.password.clone(),
        reads: crate::read_barrier::ReadBarrier::new(raft.clone(), config.unbatched_reads),
        group_id: group_id(&config.peers),
        election_min_ms: config.election_ms.0,
        last_now: AtomicU64::new(0),
    });
    tracing::info!("raft node {} listening on {}", config.id, config.listen);
    let mut metrics = raft.metrics();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted.map_err(|e| anyhow::anyhow!("accept on {}: {e}", config.listen))?;
                tokio::spawn(dispatch(stream, node.clone()));
            }
            changed = metrics.changed() => {
                let failed = changed.is_err() || metrics.borrow().running_state.is_err();
                if failed {
                    let state = metrics.borrow().running_state.clone();
                    anyhow::bail!("raft stopped: {state:?}; restart the node (its log and snapshot are on disk)");
                }
            }
        }
    }
}

/// Peers open with [`RPC_MAGIC`]; anything else is a RESP client.
async fn dispatch(stream: TcpStream, node: Arc<Node>) {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == RPC_MAGIC[0] => {
            let mut stream = stream;
            let mut magic = [0u8; 8];
            if stream.read_exact(&mut magic).await.is_err() || &magic != RPC_MAGIC {
                return;
            }
            if node.isolation.is_on() {
                return;
            }
            let secret = node.password.clone().unwrap_or_default();
            let proven = tokio::time::timeout(
                crate::peer_auth::HANDSHAKE_TIMEOUT,
                crate::peer_auth::check_dialer(&mut stream, secret.as_bytes()),
            )
            .await;
            if !matches!(proven, Ok(Ok(()))) {
                tracing::warn!(
                    "refused a peer connection from {}: it did not prove the group's secret",
                    stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| "?".into())
                );
                return;
            }
            serve_peer(stream, node.raft.clone(), node.isolation.clone()).await;
        }
        Ok(_) => serve_client(stream, node).await,
        Err(_) => {}
    }
}
