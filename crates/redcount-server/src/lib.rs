//! Local processes that redcount starts and stops on this machine: a private `redis-server`
//! ([`RedisServer`], the embedded Redis of `run` and every test's), a replicated Redis with Sentinels
//! ([`sentinel`]) and a Raft group of `redcount raft-node` processes ([`raft_group`]), both found again
//! in their directory by [`LocalCluster`]. What they share (pid files, stopping, private files) is in
//! [`process`].

#![warn(missing_docs)]

pub mod process;
pub mod raft_group;
mod redis_server;
pub mod sentinel;

use std::path::Path;

pub use process::{die_with_parent, free_port, random_hex, running_pid, write_private};
pub use redis_server::{find_redis_server, RedisServer, ServerError, ServerOptions};

/// What `redcount cluster up` left in a directory: a Sentinel-managed replicated Redis or a Raft group.
#[derive(Debug, Clone)]
pub enum LocalCluster {
    /// A primary, its replicas and Sentinels.
    Sentinel(sentinel::Cluster),
    /// `redcount raft-node` processes.
    Raft(raft_group::Group),
}

impl LocalCluster {
    /// The cluster started in `dir`, of whichever kind it is.
    pub fn load(dir: &Path) -> anyhow::Result<LocalCluster> {
        if raft_group::Group::exists(dir) {
            Ok(LocalCluster::Raft(raft_group::Group::load(dir)?))
        } else {
            Ok(LocalCluster::Sentinel(sentinel::Cluster::load(dir)?))
        }
    }
}
