//! `redcount cluster up|down|status`: a local replicated Redis with Sentinel failover, a local
//! Redis Cluster (`--shards N`), or a local Raft group (`--raft N`).

use std::path::Path;
use std::process::ExitCode;

use redcount_server::redis_cluster::{self, NodeState, ShardedCluster};
use redcount_server::sentinel::{cluster_down, cluster_restart_missing, cluster_up, Cluster};
use redcount_server::LocalCluster;

use crate::cli::ClusterCommand;

pub fn cluster(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClusterCommand::Up {
            dir,
            replicas,
            sentinels,
            shards,
            raft,
        } => {
            if let Some(size) = raft {
                return super::raft::group_up(&dir, size);
            }
            if let Some(shards) = shards {
                return sharded_up(&dir, shards, replicas.unwrap_or(1));
            }
            let replicas = replicas.unwrap_or(2);
            if sentinels == 0 {
                anyhow::bail!(
                    "a cluster needs at least one Sentinel to find its primary (--sentinels)"
                );
            }
            if dir.join(redcount_server::sentinel::CLUSTER_FILE).exists() {
                // Already there: start whatever died, and say the URL again.
                let (cluster, started) = cluster_restart_missing(&dir)?;
                eprintln!(
                    "the cluster in {} was already up; started {started} of its processes again; use:",
                    dir.display()
                );
                println!("{}", cluster.url());
                return Ok(ExitCode::SUCCESS);
            }
            let cluster = cluster_up(&dir, replicas, sentinels)?;
            eprintln!(
                "started a primary, {replicas} replicas and {sentinels} Sentinels in {} \
                 (stop them with `redcount cluster down --dir {}`); use:",
                dir.display(),
                dir.display()
            );
            println!("{}", cluster.url());
        }
        ClusterCommand::Down { dir } => match LocalCluster::load(&dir)? {
            LocalCluster::Raft(_) => super::raft::group_down(&dir)?,
            LocalCluster::Sharded(_) => {
                let cluster = redis_cluster::cluster_down(&dir)?;
                eprintln!("stopped {} cluster nodes", cluster.nodes.len());
            }
            LocalCluster::Sentinel(_) => {
                let cluster = cluster_down(&dir)?;
                eprintln!(
                    "stopped {} data nodes and {} Sentinels",
                    cluster.nodes.len(),
                    cluster.sentinels.len()
                );
            }
        },
        ClusterCommand::Status { dir } => match LocalCluster::load(&dir)? {
            LocalCluster::Raft(group) => return super::raft::group_status(&group),
            LocalCluster::Sharded(cluster) => sharded_status(&cluster),
            LocalCluster::Sentinel(cluster) => {
                for &port in &cluster.nodes {
                    println!("127.0.0.1:{port}  {}", describe(&cluster, port));
                }
                for &port in &cluster.sentinels {
                    let state = if cluster.pid(port).is_some() {
                        "sentinel"
                    } else {
                        "down"
                    };
                    println!("127.0.0.1:{port}  {state}");
                }
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// `cluster up --shards N`: a new Redis Cluster, or the one already in `dir` with its stopped
/// nodes started again.
fn sharded_up(dir: &Path, shards: usize, replicas: usize) -> anyhow::Result<ExitCode> {
    if ShardedCluster::exists(dir) {
        let (cluster, started) = redis_cluster::cluster_restart_missing(dir)?;
        eprintln!(
            "the Redis Cluster in {} was already up; started {started} of its nodes again; use:",
            dir.display()
        );
        println!("{}", cluster.url());
        return Ok(ExitCode::SUCCESS);
    }
    let cluster = redis_cluster::cluster_up(dir, shards, replicas)?;
    eprintln!(
        "started a Redis Cluster of {shards} shards with {replicas} replica(s) each in {} \
         (stop it with `redcount cluster down --dir {}`); use:",
        dir.display(),
        dir.display()
    );
    println!("{}", cluster.url());
    Ok(ExitCode::SUCCESS)
}

/// One line per node: its address and role (the slots a primary serves, the primary a replica
/// follows), or `down`.
fn sharded_status(cluster: &ShardedCluster) {
    for view in cluster.views() {
        let role = match view.state {
            Some(NodeState::Primary { slots }) if slots.is_empty() => "primary, no slots".into(),
            Some(NodeState::Primary { slots }) => format!("primary of slots {slots}"),
            Some(NodeState::Replica { of }) => format!("replica of {of}"),
            None => "down".into(),
        };
        println!("127.0.0.1:{}  {role}", view.port);
    }
}

/// `master offset N`, `slave of 127.0.0.1:P offset N`, or `down`.
fn describe(cluster: &Cluster, port: u16) -> String {
    let role = redis::Client::open(cluster.node_url(port)).and_then(|c| {
        let mut con = c.get_connection_with_timeout(std::time::Duration::from_millis(500))?;
        redis::cmd("INFO")
            .arg("replication")
            .query::<String>(&mut con)
    });
    let Ok(info) = role else { return "down".into() };
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or("?")
            .trim()
            .to_string()
    };
    match field("role").as_str() {
        "master" => format!(
            "primary, {} replicas, offset {}",
            field("connected_slaves"),
            field("master_repl_offset")
        ),
        _ => format!(
            "replica of {}:{} ({}), offset {}",
            field("master_host"),
            field("master_port"),
            field("master_link_status"),
            field("slave_repl_offset")
        ),
    }
}
