//! A local replicated Redis (`cluster up` without `--raft`): one primary, N replicas and M Sentinels on free loopback ports, each a
//! daemonized redis-server with its config, pid and log files under one directory, so that
//! `redcount cluster up` can exit and `redcount cluster down` can find them again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::daemon::{self, common_conf, join_ports, launch, start, Record};
use crate::process::stop_all;
use crate::{find_redis_server, free_port, random_hex, ServerError};

/// The Sentinel name of the primary.
pub const MASTER_NAME: &str = "redcount";

/// The file a Sentinel set is recorded in.
pub const CLUSTER_FILE: &str = "cluster.txt";

/// What runs where; saved as [`CLUSTER_FILE`] in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The directory holding every file.
    pub dir: PathBuf,
    /// What data nodes and clients AUTH with.
    pub password: String,
    /// Data nodes; the first started as the primary.
    pub nodes: Vec<u16>,
    /// Ports of the Sentinels.
    pub sentinels: Vec<u16>,
}

impl Cluster {
    /// `redis+sentinel://:password@127.0.0.1:p1,127.0.0.1:p2/redcount`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!(
            "redis+sentinel://:{}@{}/{MASTER_NAME}",
            self.password,
            hosts.join(",")
        )
    }

    /// `redis://:password@127.0.0.1:port` of one data node.
    pub fn node_url(&self, port: u16) -> String {
        format!("redis://:{}@127.0.0.1:{port}", self.password)
    }

    /// Pid of the redis-server on `port` (data node or Sentinel), from its pid file, if it still runs
    /// (a pid file left by a killed server may name a pid since reused by something else).
    pub fn pid(&self, port: u16) -> Option<i32> {
        daemon::pid(&self.dir, port)
    }

    fn save(&self) -> std::io::Result<()> {
        Record::write(
            &self.dir.join(CLUSTER_FILE),
            &[
                ("password", self.password.clone()),
                ("nodes", join_ports(&self.nodes)),
                ("sentinels", join_ports(&self.sentinels)),
            ],
        )
    }

    /// Reads a cluster started earlier in `dir`.
    pub fn load(dir: &Path) -> Result<Cluster, ServerError> {
        let record = Record::read(&dir.join(CLUSTER_FILE))?;
        Ok(Cluster {
            dir: dir.to_path_buf(),
            password: record.text("password"),
            nodes: record.ports("nodes"),
            sentinels: record.ports("sentinels"),
        })
    }
}

/// Starts a primary, `replicas` replicas and `sentinels` Sentinels under `dir` and waits until the
/// Sentinels know the primary.
pub fn cluster_up(dir: &Path, replicas: usize, sentinels: usize) -> Result<Cluster, ServerError> {
    let program = find_redis_server().ok_or(ServerError::NotInstalled)?;
    let dir = daemon::fresh_dir(dir, crate::CLUSTER_MARKERS)?;
    let mut cluster = Cluster {
        dir: dir.clone(),
        password: random_hex(16),
        nodes: vec![],
        sentinels: vec![],
    };
    if let Err(err) = start_processes(&program, &mut cluster, replicas, sentinels) {
        // Daemonized: nothing else would ever stop the ones that did start.
        let started: Vec<u16> = cluster
            .nodes
            .iter()
            .chain(&cluster.sentinels)
            .copied()
            .collect();
        let pids: Vec<i32> = started.iter().filter_map(|&p| cluster.pid(p)).collect();
        stop_all(&pids, Duration::from_secs(5));
        return Err(err);
    }
    cluster.save().map_err(|source| ServerError::Dir {
        path: dir.clone(),
        source,
    })?;
    Ok(cluster)
}

/// Starts the data nodes, waits for the replicas, then starts the Sentinels; `cluster` lists what
/// was started so far, even on failure.
fn start_processes(
    program: &Path,
    cluster: &mut Cluster,
    replicas: usize,
    sentinels: usize,
) -> Result<(), ServerError> {
    for i in 0..=replicas {
        let port = free_port().map_err(ServerError::Spawn)?;
        let mut conf = common_conf(&cluster.dir, port);
        conf.push_str(&data_node_conf(&cluster.password, replicas));
        if i > 0 {
            conf.push_str(&format!("replicaof 127.0.0.1 {}\n", cluster.nodes[0]));
        }
        start(program, &cluster.dir, port, &conf, false)?;
        cluster.nodes.push(port);
    }
    wait_streaming(cluster, replicas)?;
    let quorum = sentinels / 2 + 1;
    for _ in 0..sentinels {
        let port = free_port().map_err(ServerError::Spawn)?;
        let mut conf = common_conf(&cluster.dir, port);
        conf.push_str(&sentinel_conf(
            &cluster.password,
            &format!("127.0.0.1 {}", cluster.nodes[0]),
            quorum,
        ));
        start(program, &cluster.dir, port, &conf, true)?;
        cluster.sentinels.push(port);
    }
    Ok(())
}

/// The settings of every data node (primary and replicas) of a cluster with `replicas` replicas,
/// after its address lines.
pub fn data_node_conf(password: &str, replicas: usize) -> String {
    // No delay before a full sync: by default a primary waits 5 s for more replicas to arrive.
    let mut conf = format!(
        "requirepass {password}\nmasterauth {password}\nsave \"\"\nappendonly no\nrepl-diskless-sync-delay 0\n"
    );
    if replicas >= 2 {
        // A primary that has heard from no replica for 2 s refuses writes (NOREPLICAS, which
        // clients retry through the Sentinels). Cut off from its replicas and Sentinels but not
        // from the workers, it would otherwise go on taking commits that the failover, 2 s of
        // silence later, throws away: a job could even finish there, on a server about to become
        // a replica. Bounded so, at most about 2 s of commits are lost, and they are re-done.
        // Not with one replica: after its promotion the new primary would have none, and would
        // refuse every write until the old one came back.
        conf.push_str("min-replicas-to-write 1\nmin-replicas-max-lag 2\n");
    }
    conf
}

/// The settings of a Sentinel watching the primary at `primary` (`HOST PORT`), after its address
/// lines; `quorum` Sentinels must agree it is down.
pub fn sentinel_conf(password: &str, primary: &str, quorum: usize) -> String {
    // The Sentinels take commands only with the cluster's password (a local process could otherwise
    // SENTINEL FAILOVER, SET or REMOVE the primary) and use it with each other. down-after is twice
    // the Sentinels' 1 s ping period: at 1 s, a Sentinel that had just switched to the promoted
    // replica sometimes judged it down before its first ping was answered and failed it over again,
    // to a replica without the acknowledged commits.
    format!(
        "requirepass {password}\nsentinel sentinel-pass {password}\n\
         sentinel monitor {MASTER_NAME} {primary} {quorum}\nsentinel auth-pass {MASTER_NAME} {password}\n\
         sentinel down-after-milliseconds {MASTER_NAME} 2000\nsentinel failover-timeout {MASTER_NAME} 5000\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n"
    )
}

/// Key written once by `cluster up` (and expiring by itself) to see every replica acknowledge it.
const SYNCED_KEY: &str = "rc:cluster:synced";

/// Waits until every replica has finished its first sync and acknowledges a write. Its link being
/// up is not enough: after a diskless sync the primary streams writes to a replica only from its
/// first acknowledgement, up to a second later, and a primary killed meanwhile took every write of
/// that second with it (a job started at once lost the whole job in the failover test).
fn wait_streaming(cluster: &Cluster, replicas: usize) -> Result<(), ServerError> {
    let primary = cluster.nodes[0];
    let not_ready = |detail: String| ServerError::NotReady {
        port: primary,
        detail,
        log: cluster.dir.join(format!("{primary}.log")),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let acked: u64 = loop {
        let tried = redis::Client::open(cluster.node_url(primary)).and_then(|c| {
            let mut con = c.get_connection_with_timeout(Duration::from_secs(1))?;
            redis::cmd("SET")
                .arg(SYNCED_KEY)
                .arg(1)
                .arg("PX")
                .arg(10_000)
                .query::<()>(&mut con)?;
            redis::cmd("WAIT").arg(replicas).arg(15_000).query(&mut con)
        });
        match tried {
            Ok(acked) => break acked,
            // min-replicas-to-write: the primary takes writes once its replicas have connected.
            Err(e) if e.code() == Some("NOREPLICAS") && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(not_ready(format!("could not check its replicas: {e}"))),
        }
    };
    if (acked as usize) < replicas {
        return Err(not_ready(format!(
            "only {acked} of {replicas} replicas acknowledged a write within 15 s"
        )));
    }
    Ok(())
}

/// Starts again every process of the cluster in `dir` that is not running (a killed primary comes
/// back and its Sentinels make it a replica of the new one), from the config it had. Returns the
/// cluster and how many were started.
pub fn cluster_restart_missing(dir: &Path) -> Result<(Cluster, usize), ServerError> {
    let program = find_redis_server().ok_or(ServerError::NotInstalled)?;
    let cluster = Cluster::load(dir)?;
    let mut started = 0;
    for (&port, sentinel) in cluster
        .nodes
        .iter()
        .map(|p| (p, false))
        .chain(cluster.sentinels.iter().map(|p| (p, true)))
    {
        if cluster.pid(port).is_none() {
            launch(&program, &cluster.dir, port, sentinel)?;
            started += 1;
        }
    }
    Ok((cluster, started))
}

/// Stops every process of the cluster in `dir` (SIGTERM, then SIGKILL) and forgets it.
pub fn cluster_down(dir: &Path) -> Result<Cluster, ServerError> {
    let cluster = Cluster::load(dir)?;
    let ports: Vec<u16> = cluster
        .sentinels
        .iter()
        .chain(&cluster.nodes)
        .copied()
        .collect();
    daemon::stop(dir, &ports);
    let _ = std::fs::remove_file(dir.join(CLUSTER_FILE));
    Ok(cluster)
}
