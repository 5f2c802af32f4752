//! redcount's protocol: the keys of a job, the Redis Functions library that changes them, and typed
//! Rust calls of that library over a connection that survives Redis going away.
//!
//! Every state change of a job is one `FCALL` of `library.lua`; read it first, it is the protocol.

#![warn(missing_docs)]

mod clock;
mod commands;
mod job;
mod keys;
mod library;
mod link;
mod partials;
mod reads;
mod reply;
mod spec;
mod status;
mod target;
mod task;

pub use clock::now_ms;
pub use commands::{is_read, READ_COMMANDS, READ_ONLY_FUNCTIONS};
pub use job::{ClaimRequest, Claimed, CommitOutcome, Job};
pub use keys::{validate_job_name, JobKeys};
pub use library::{ensure_library, LIBRARY_SOURCE, LIBRARY_VERSION};
pub use link::{redact_url, Link, LinkOptions};
pub use partials::{MergeClaim, MergePolicy, INLINE_BLOB, STAGE_PIECE, TOP_PER_PARTITION};
pub use reads::{job_names, DeadTask, DoneRecord, JobEvent};
pub use spec::{
    live_window, Aggregation, JobSpec, TokenizerKind, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PARTITIONS,
};
pub use status::{Status, STATUS_FIELDS};
pub use task::{Format, NewTask, Piece, Task};

/// Everything that can go wrong talking to a job in Redis.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis answered with an error, or could not be reached in time.
    #[error("redis at {addr}: {source}")]
    Redis {
        /// The Redis address, password hidden.
        addr: String,
        /// What Redis or the connection said.
        #[source]
        source: redis::RedisError,
    },
    /// The job's keys do not exist (never created, or Redis restarted without its data).
    #[error("no job '{job}' at redis {addr}: {hint}")]
    NoJob {
        /// The job's name.
        job: String,
        /// The Redis address, password hidden.
        addr: String,
        /// What to check.
        hint: &'static str,
    },
    /// Redis sent a reply the protocol does not expect (a stale library or a foreign key).
    #[error("unexpected reply from redis at {addr} to {call}: {detail}")]
    Reply {
        /// The Redis address, password hidden.
        addr: String,
        /// The library function called.
        call: &'static str,
        /// What came back.
        detail: String,
    },
    /// A job name that cannot be used in a key.
    #[error("invalid job name '{0}': use 1-100 characters, letters, digits, '-', '_' or '.'")]
    JobName(String),
}

/// Result of a protocol call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
