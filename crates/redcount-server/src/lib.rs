//! Local processes that redcount starts and stops on this machine: a private `redis-server`
//! ([`RedisServer`], the embedded Redis of `run` and every test's), a replicated Redis with Sentinels
//! ([`sentinel`]), a Redis Cluster of shards ([`redis_cluster`]) and a Raft group of `redcount
//! raft-node` processes ([`raft_group`]), each found again in its directory by [`LocalCluster`]. What
//! they share (pid files, stopping, private files) is in [`process`], and the daemonized
//! redis-servers of the first two in `daemon`.

#![warn(missing_docs)]

mod daemon;
pub mod process;
pub mod raft_group;
pub mod redis_cluster;
mod redis_server;
pub mod sentinel;

use std::path::Path;

pub use process::{die_with_parent, free_port, random_hex, running_pid, write_private};
pub use redis_server::{find_redis_server, RedisServer, ServerError, ServerOptions};

/// The files each kind of cluster records itself in: `cluster up` refuses a directory holding one.
pub(crate) const CLUSTER_MARKERS: &[&str] = &[
    sentinel::CLUSTER_FILE,
    redis_cluster::CLUSTER_FILE,
    raft_group::GROUP_FILE,
];

/// What `redcount cluster up` left in a directory: a Sentinel-managed replicated Redis, a Redis
/// Cluster or a Raft group.
#[derive(Debug, Clone)]
pub enum LocalCluster {
    /// A primary, its replicas and Sentinels.
    Sentinel(sentinel::Cluster),
    /// Shards of a Redis Cluster.
    Sharded(redis_cluster::ShardedCluster),
    /// `redcount raft-node` processes.
    Raft(raft_group::Group),
}

impl LocalCluster {
    /// The cluster started in `dir`, of whichever kind it is.
    pub fn load(dir: &Path) -> anyhow::Result<LocalCluster> {
        if raft_group::Group::exists(dir) {
            Ok(LocalCluster::Raft(raft_group::Group::load(dir)?))
        } else if redis_cluster::ShardedCluster::exists(dir) {
            Ok(LocalCluster::Sharded(redis_cluster::ShardedCluster::load(
                dir,
            )?))
        } else {
            Ok(LocalCluster::Sentinel(sentinel::Cluster::load(dir)?))
        }
    }
}
