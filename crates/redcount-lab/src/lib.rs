//! The lab beside the engine: [`bench`] measures throughput and what the coordinator costs (plain
//! Redis, durability modes, replication, a Raft group), and [`experiment`] runs the streaming-latency
//! experiments and writes their data, plots and report, and [`partitions`] runs minutes of network
//! faults on a Raft group behind fault proxies, and [`hosts_experiment`] reports a job across
//! network namespaces. Nothing here is on the data path: it drives
//! the same `run` and `stream` a user does and reads what they report.

#![warn(missing_docs)]

pub mod bench;
pub mod experiment;
pub mod hosts_experiment;
pub mod partitions;
