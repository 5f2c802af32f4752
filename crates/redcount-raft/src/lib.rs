//! A Raft-replicated coordinator: `redcount raft-node` processes that speak RESP, so workers and the
//! driver use a group of them like one Redis, while every write is a Raft log entry applied in order to
//! each node's private redis-server. The public surface is one node: [`NodeConfig`] and [`run`].
//!
//! Data flow inside a node: `session` reads a client command and `commands` routes it; a write
//! becomes a log entry (`log_store`, replicated by `network`) and, once committed, is applied by
//! `state_machine` to the node's Redis (`redis_machine`, behind the `machine` trait, started by
//! `keeper`); the leader answers the client with its own result. `replica` is what every connection
//! of the node shares, `read_barrier` the quorum rounds its reads share; `node` wires the pieces to
//! openraft; `peer_auth` makes every peer prove the group's secret before its RPCs are read.
//! `frame` and `local` speak RESP.

#![warn(missing_docs)]

mod commands;
mod frame;
mod keeper;
mod local;
mod log_store;
mod machine;
mod network;
mod node;
mod peer_auth;
mod read_barrier;
mod redis_machine;
mod replica;
mod session;
mod snapshot_file;
mod state_machine;
#[cfg(test)]
mod storage_suite;
mod types;

pub use node::{run, NodeConfig};
