//! The connection layer, apart from the protocol it carries: where a job's Redis is (one server,
//! the primary Sentinels name, a Raft group's leader, a Redis Cluster: `target.rs`), one live
//! connection to it with the routed calls a job needs (`con.rs`), and the link that reconnects,
//! retries what is safe to retry, follows failovers and words errors for people (`link.rs`).
//! Nothing here knows a job's keys or the library's functions, except loading the library on a
//! server that lacks it.

pub(crate) mod con;
pub(crate) mod link;
pub(crate) mod target;
