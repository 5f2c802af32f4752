//! A local Redis Cluster (`cluster up --shards N [--replicas R]`): N primaries with R replicas each,
//! every node a daemonized `redis-server --cluster-enabled yes` on a free loopback port with its
//! files under one directory (`redis-cluster.txt` lists them), one random password for clients and
//! replication. The slots are split evenly by `redis-cli --cluster create`, which gets the password
//! from its environment (`REDISCLI_AUTH`), never from a command line.
//!
//! The cluster bus (node to node: gossip, failure reports, failover votes) has no password in
//! Redis; here it speaks mutual TLS (`tls-cluster yes`, `tls-auth-clients yes`) with a certificate
//! made for this cluster and signed by a CA whose key is thrown away once it has signed, so only
//! the cluster's own nodes can talk on it: a local process cannot join a node to the cluster or
//! vote in a failover.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::{self, common_conf, join_ports, launch, start, Record};
use crate::{find_redis_server, random_hex, write_private, ServerError};

/// The file a Redis Cluster is recorded in.
pub const CLUSTER_FILE: &str = "redis-cluster.txt";

/// How long a node may be unreachable before the others count it failed and its replica takes
/// over: short, since these nodes share one machine (Redis's default is 15 s).
pub const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// What runs where; saved as [`CLUSTER_FILE`] in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedCluster {
    /// The directory holding every file.
    pub dir: PathBuf,
    /// What clients and replicas AUTH with.
    pub password: String,
    /// Primaries at creation.
    pub shards: usize,
    /// Replicas of each primary at creation.
    pub replicas: usize,
    /// Every node's port (the first `shards` were created primaries; roles change on failover).
    pub nodes: Vec<u16>,
    /// Each node's cluster bus port, in the order of `nodes` (chosen free, not `port + 10000`,
    /// which can be taken or past 65535).
    pub bus_ports: Vec<u16>,
    /// Each node's TLS port, in the order of `nodes`: replicas sync from their primary there (a
    /// cluster whose bus speaks TLS replicates over TLS too), with the bus's certificates.
    pub tls_ports: Vec<u16>,
}

/// The certificate files of the bus, under the cluster's directory.
const TLS_DIR: &str = "bus-tls";

/// One node as it sees itself (`CLUSTER NODES`, its `myself` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Its port.
    pub port: u16,
    /// None when it does not answer.
    pub state: Option<NodeState>,
}

/// A live node's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// Serves these slot ranges (`0-5460 ...`).
    Primary {
        /// Its slot ranges, as the cluster prints them.
        slots: String,
    },
    /// Replicates the primary at this address.
    Replica {
        /// `host:port` of its primary.
        of: String,
    },
}

impl ShardedCluster {
    /// `redis+cluster://:password@127.0.0.1:p1,127.0.0.1:p2,...`: every node, so a client finds
    /// the cluster whichever of them is down.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://:{}@{}", self.password, hosts.join(","))
    }

    /// `redis://:password@127.0.0.1:port` of one node.
    pub fn node_url(&self, port: u16) -> String {
        format!("redis://:{}@127.0.0.1:{port}", self.password)
    }

    /// Pid of the node on `port`, if it runs.
    pub fn pid(&self, port: u16) -> Option<i32> {
        daemon::pid(&self.dir, port)
    }

    /// True when `dir` holds a Redis Cluster started by `cluster up --shards`.
    pub fn exists(dir: &Path) -> bool {
        dir.join(CLUSTER_FILE).exists()
    }

    fn save(&self) -> std::io::Result<()> {
        Record::write(
            &self.dir.join(CLUSTER_FILE),
            &[
                ("password", self.password.clone()),
                ("shards", self.shards.to_string()),
                ("replicas", self.replicas.to_string()),
                ("nodes", join_ports(&self.nodes)),
                ("bus", join_ports(&self.bus_ports)),
                ("tls", join_ports(&self.tls_ports)),
            ],
        )
    }

    /// Reads the cluster started earlier in `dir`.
    pub fn load(dir: &Path) -> Result<ShardedCluster, ServerError> {
        let record = Record::read(&dir.join(CLUSTER_FILE))?;
        Ok(ShardedCluster {
            dir: dir.to_path_buf(),
            password: record.text("password"),
            shards: record.number("shards"),
            replicas: record.number("replicas"),
            nodes: record.ports("nodes"),
            bus_ports: record.ports("bus"),
            tls_ports: record.ports("tls"),
        })
    }

    /// Each node's role as it reports it (one `CLUSTER NODES` per node, 500 ms at most each).
    pub fn views(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|&port| NodeView {
                port,
                state: self.cluster_nodes(port).ok().and_then(|t| own_state(&t)),
            })
            .collect()
    }

    /// The port of the primary serving `key` now (its slot, as `CLUSTER KEYSLOT` says, in the
    /// ranges a live primary reports), if any.
    pub fn primary_of(&self, key: &str) -> Option<u16> {
        let views = self.views();
        let slot: u16 = views.iter().find_map(|v| {
            let mut con = self.connection(v.port).ok()?;
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query(&mut con)
                .ok()
        })?;
        views.into_iter().find_map(|v| match v.state {
            Some(NodeState::Primary { slots }) if serves(&slots, slot) => Some(v.port),
            _ => None,
        })
    }

    fn connection(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.node_url(port))?
            .get_connection_with_timeout(Duration::from_millis(500))
    }

    fn cluster_nodes(&self, port: u16) -> redis::RedisResult<String> {
        let mut con = self.connection(port)?;
        con.set_read_timeout(Some(Duration::from_millis(500)))?;
        redis::cmd("CLUSTER").arg("NODES").query(&mut con)
    }
}

/// The `myself` line of a `CLUSTER NODES` reply, as a role.
fn own_state(nodes: &str) -> Option<NodeState> {
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let me = lines
        .iter()
        .find(|f| f.get(2).is_some_and(|flags| flags.contains("myself")))?;
    let flags = me.get(2)?;
    if flags.contains("master") {
        return Some(NodeState::Primary {
            slots: me.get(8..).map(|s| s.join(" ")).unwrap_or_default(),
        });
    }
    let primary_id = me.get(3)?;
    let of = lines
        .iter()
        .find(|f| f.first() == Some(primary_id))
        .and_then(|f| f.get(1))
        .map(|addr| addr.split('@').next().unwrap_or(addr).to_string())
        .unwrap_or_else(|| format!("node {primary_id}"));
    Some(NodeState::Replica { of })
}

/// True when `slot` is in `ranges` (`0-5460 5462 ...`, as `CLUSTER NODES` lists a primary's).
fn serves(ranges: &str, slot: u16) -> bool {
    ranges.split_whitespace().any(|range| {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
    })
}

/// The settings of every node of a cluster, after its address lines.
fn node_conf(dir: &Path, [port, bus_port, tls_port]: [u16; 3], password: &str) -> String {
    let mut conf = common_conf(dir, port);
    let tls = dir.join(TLS_DIR);
    conf.push_str(&format!(
        "cluster-enabled yes\ncluster-config-file nodes-{port}.conf\ncluster-port {bus_port}\n\
         # The bus and replication speak mutual TLS: only holders of this cluster's certificate\n\
         # are heard. Clients use the plain port, with the password.\n\
         tls-port {tls_port}\ntls-cluster yes\ntls-replication yes\ntls-auth-clients yes\n\
         tls-cert-file {t}/node.crt\n\
         tls-key-file {t}/node.key\ntls-ca-cert-file {t}/ca.crt\n\
         cluster-node-timeout {}\n\
         # A shard without a live primary stops only its own slots: jobs on other shards go on.\n\
         cluster-require-full-coverage no\n\
         # A replica always takes over a failed primary, however long the link was down.\n\
         cluster-replica-validity-factor 0\n\
         requirepass {password}\nmasterauth {password}\nsave \"\"\nappendonly no\nrepl-diskless-sync-delay 0\n",
        NODE_TIMEOUT.as_millis(),
        t = tls.display()
    ));
    conf
}

/// Starts `shards` primaries with `replicas` replicas each under `dir`, joins them into one cluster
/// covering every slot, and waits until every node reports the cluster up and every replica has
/// acknowledged a write of its primary.
pub fn cluster_up(
    dir: &Path,
    shards: usize,
    replicas: usize,
) -> Result<ShardedCluster, ServerError> {
    if shards < 3 {
        // Redis's own rule (`redis-cli --cluster create` refuses fewer): with fewer than three
        // primaries no majority is left to vote a failed one's replica in.
        return Err(ServerError::Refused(format!(
            "a Redis Cluster needs at least 3 primaries (--shards 3 or more), not {shards}; for \
             one Redis with failover use `cluster up` without --shards (Sentinels)"
        )));
    }
    let program = find_redis_server().ok_or(ServerError::NotInstalled)?;
    let dir = daemon::fresh_dir(dir, crate::CLUSTER_MARKERS)?;
    let mut cluster = ShardedCluster {
        dir: dir.clone(),
        password: random_hex(16),
        shards,
        replicas,
        nodes: vec![],
        bus_ports: vec![],
        tls_ports: vec![],
    };
    write_bus_certificates(&dir.join(TLS_DIR))?;
    let started = (|| {
        for _ in 0..shards * (replicas + 1) {
            let [port, bus_port, tls_port] = free_ports()?;
            let conf = node_conf(&dir, [port, bus_port, tls_port], &cluster.password);
            start(&program, &dir, port, &conf, false)?;
            cluster.nodes.push(port);
            cluster.bus_ports.push(bus_port);
            cluster.tls_ports.push(tls_port);
        }
        create(&cluster)?;
        wait_ready(&cluster)
    })();
    if let Err(err) = started {
        // Daemonized: nothing else would ever stop the ones that did start.
        daemon::stop(&dir, &cluster.nodes);
        return Err(err);
    }
    cluster.save().map_err(|source| ServerError::Dir {
        path: dir.clone(),
        source,
    })?;
    Ok(cluster)
}

/// Three distinct free loopback ports (a node's clients', bus's and TLS replication's).
fn free_ports() -> Result<[u16; 3], ServerError> {
    // Held open together, so none can be another again.
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").map_err(ServerError::Spawn);
    let held = [bind()?, bind()?, bind()?];
    let mut ports = [0u16; 3];
    for (port, listener) in ports.iter_mut().zip(&held) {
        *port = listener.local_addr().map_err(ServerError::Spawn)?.port();
    }
    Ok(ports)
}

/// A CA, and one certificate and key for every node signed by it, in `dir` (mode 0600). The CA's
/// key is never written: no other certificate can be made for this cluster.
fn write_bus_certificates(dir: &Path) -> Result<(), ServerError> {
    let failed = |detail: String| ServerError::Dir {
        path: dir.to_path_buf(),
        source: std::io::Error::other(detail),
    };
    std::fs::create_dir_all(dir).map_err(|source| ServerError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let made = (|| -> Result<(String, String, String), rcgen::Error> {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "redcount cluster bus CA");
        let ca_key = rcgen::KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut node = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?;
        node.distinguished_name
            .push(rcgen::DnType::CommonName, "redcount cluster node");
        let node_key = rcgen::KeyPair::generate()?;
        let node_cert = node.signed_by(&node_key, &issuer)?;
        Ok((ca_cert.pem(), node_cert.pem(), node_key.serialize_pem()))
    })()
    .map_err(|e| failed(format!("cannot make the cluster bus certificates: {e}")))?;
    for (name, text) in [
        ("ca.crt", made.0),
        ("node.crt", made.1),
        ("node.key", made.2),
    ] {
        let path = dir.join(name);
        write_private(&path, &text).map_err(|source| ServerError::Dir { path, source })?;
    }
    Ok(())
}

/// `redis-cli --cluster create`: slots split evenly over the first `shards` nodes, the others
/// made their replicas.
fn create(cluster: &ShardedCluster) -> Result<(), ServerError> {
    let first = cluster.nodes[0];
    let mut cmd = Command::new("redis-cli");
    cmd.arg("--cluster").arg("create");
    for port in &cluster.nodes {
        cmd.arg(format!("127.0.0.1:{port}"));
    }
    cmd.arg("--cluster-replicas")
        .arg(cluster.replicas.to_string())
        .arg("--cluster-yes")
        .env("REDISCLI_AUTH", &cluster.password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output().map_err(|e| ServerError::NotReady {
        port: first,
        detail: format!(
            "could not run `redis-cli --cluster create` ({e}); redis-cli comes with redis-server \
             (Debian: redis-tools)"
        ),
        log: daemon::log(&cluster.dir, first),
    })?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = said.lines().rev().take(5).collect();
        return Err(ServerError::NotReady {
            port: first,
            detail: format!(
                "`redis-cli --cluster create` failed ({}): {} {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            log: daemon::log(&cluster.dir, first),
        });
    }
    Ok(())
}

/// Waits (up to 30 s) until every node says `cluster_state:ok` and knows every other node, then
/// until each primary's replicas acknowledge a write (`WAIT`): a primary killed before its replicas
/// stream from it would take a job's first writes with it.
fn wait_ready(cluster: &ShardedCluster) -> Result<(), ServerError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let total = cluster.nodes.len();
    for &port in &cluster.nodes {
        loop {
            let ready = cluster.connection(port).and_then(|mut con| {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con)?;
                let known: String = redis::cmd("CLUSTER").arg("NODES").query(&mut con)?;
                Ok(info.contains("cluster_state:ok") && known.lines().count() == total)
            });
            match ready {
                Ok(true) => break,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                other => {
                    return Err(ServerError::NotReady {
                        port,
                        detail: format!("the cluster did not come up within 30 s ({other:?})"),
                        log: daemon::log(&cluster.dir, port),
                    })
                }
            }
        }
    }
    if cluster.replicas == 0 {
        return Ok(());
    }
    for view in cluster.views() {
        if let Some(NodeState::Primary { .. }) = view.state {
            wait_replicas_ack(cluster, view.port, deadline)?;
        }
    }
    Ok(())
}

/// Writes a short-lived key this primary owns and waits for its replicas to acknowledge it.
fn wait_replicas_ack(
    cluster: &ShardedCluster,
    port: u16,
    deadline: Instant,
) -> Result<(), ServerError> {
    let not_ready = |detail: String| ServerError::NotReady {
        port,
        detail,
        log: daemon::log(&cluster.dir, port),
    };
    let mut con = cluster
        .connection(port)
        .map_err(|e| not_ready(format!("could not connect: {e}")))?;
    // The first of a few keys whose slot this primary serves (others answer MOVED).
    let mut owned = None;
    for i in 0..1000 {
        let key = format!("rc:cluster:synced:{i}");
        match redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("PX")
            .arg(10_000)
            .query::<()>(&mut con)
        {
            Ok(()) => {
                owned = Some(key);
                break;
            }
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Moved) => {}
            Err(e) => return Err(not_ready(format!("could not write: {e}"))),
        }
    }
    if owned.is_none() {
        return Err(not_ready("it serves none of 1,000 probe keys".into()));
    }
    loop {
        let acked: u64 = redis::cmd("WAIT")
            .arg(cluster.replicas)
            .arg(1000)
            .query(&mut con)
            .map_err(|e| not_ready(format!("could not check its replicas: {e}")))?;
        if acked as usize >= cluster.replicas {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(not_ready(format!(
                "only {acked} of {} replicas acknowledged a write within 30 s",
                cluster.replicas
            )));
        }
    }
}

/// Starts again every node of the cluster in `dir` that is not running: it rejoins from its nodes
/// file (a primary that failed comes back as a replica of the one promoted meanwhile). Returns the
/// cluster and how many were started.
pub fn cluster_restart_missing(dir: &Path) -> Result<(ShardedCluster, usize), ServerError> {
    let program = find_redis_server().ok_or(ServerError::NotInstalled)?;
    let cluster = ShardedCluster::load(dir)?;
    let mut started = 0;
    for &port in &cluster.nodes {
        if cluster.pid(port).is_none() {
            launch(&program, &cluster.dir, port, false)?;
            started += 1;
        }
    }
    Ok((cluster, started))
}

/// Stops every node of the cluster in `dir` (SIGTERM, then SIGKILL) and forgets it.
pub fn cluster_down(dir: &Path) -> Result<ShardedCluster, ServerError> {
    let cluster = ShardedCluster::load(dir)?;
    daemon::stop(dir, &cluster.nodes);
    for port in &cluster.nodes {
        let _ = std::fs::remove_file(dir.join(format!("nodes-{port}.conf")));
    }
    let _ = std::fs::remove_dir_all(dir.join(TLS_DIR));
    let _ = std::fs::remove_file(dir.join(CLUSTER_FILE));
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_reply_says_the_role_of_its_node() {
        let primary = "a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n\
                       b2 127.0.0.1:7002@17002 slave a1 0 1 1 connected\n";
        assert_eq!(
            own_state(primary),
            Some(NodeState::Primary {
                slots: "0-5460".into()
            })
        );
        let replica = "a1 127.0.0.1:7001@17001 master - 0 0 1 connected 0-5460\n\
                       b2 127.0.0.1:7002@17002 myself,slave a1 0 1 1 connected\n";
        assert_eq!(
            own_state(replica),
            Some(NodeState::Replica {
                of: "127.0.0.1:7001".into()
            })
        );
        assert!(serves("0-5460", 0) && serves("0-5460", 5460) && !serves("0-5460", 5461));
        assert!(serves("1-2 7 9-10", 7) && !serves("1-2 7 9-10", 8));
    }
}
