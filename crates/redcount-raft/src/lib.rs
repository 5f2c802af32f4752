//! A Raft-replicated coordinator: `redcount raft-node` processes that speak RESP, so workers and the
//! driver use a group of them like one Redis, while every write is a Raft log entry applied in order to
//! each node's private redis-server.
//!
//! Data flow inside a node: [`session`] reads a client command and [`commands`] routes it; a write
//! becomes a log entry ([`log_store`], replicated by [`network`]) and, once committed, is applied by
//! [`state_machine`] to the node's Redis (started by [`keeper`]); the leader answers the client with
//! its own result. [`node`] wires the pieces to openraft.

pub mod commands;
pub mod frame;
mod keeper;
pub mod local;
pub mod log_store;
pub mod machine;
pub mod network;
pub mod node;
pub mod redis_machine;
pub mod session;
mod snapshot_file;
pub mod state_machine;
pub mod types;

pub use node::{run, NodeConfig};
