//! `redcount cluster up|down|status`: a local replicated Redis with Sentinel failover, or a local
//! Raft group (`--raft N`).

use std::process::ExitCode;

use redcount_server::sentinel::{cluster_down, cluster_restart_missing, cluster_up, Cluster};
use redcount_server::LocalCluster;

use crate::cli::ClusterCommand;

pub fn cluster(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClusterCommand::Up {
            dir,
            replicas,
            sentinels,
            raft,
        } => {
            if let Some(size) = raft {
                return super::raft::group_up(&dir, size);
            }
            if sentinels == 0 {
                anyhow::bail!(
                    "a cluster needs at least one Sentinel to find its primary (--sentinels)"
                );
            }
            if dir.join("cluster.txt").exists() {
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
