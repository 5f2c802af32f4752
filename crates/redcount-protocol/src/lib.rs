//! redcount's protocol: the keys of a job, the Redis Functions library that changes them, and typed
//! Rust calls of that library over a connection that survives Redis going away.
//!
//! Every state change of a job is one `FCALL` of the library in `src/library/` (Lua, joined into one source by `library.rs`);
//! read it first, it is the protocol.

#![warn(missing_docs)]

pub mod calls;
mod clock;
mod commands;
mod connection;
mod escape;
mod job;
mod keys;
mod library;
mod partials;
mod reads;
mod reply;
mod retention;
mod spec;
mod status;
mod task;
mod zincrby;

pub use calls::claim::{ClaimRequest, Claimed};
pub use calls::commit::CommitOutcome;
pub use calls::failures::Deferral;
pub use calls::jobs::{Joined, StopKind};
pub use calls::lifecycle::Enqueued;
pub use clock::{now_ms, Now};
pub use commands::{function, is_read, Function, FUNCTIONS, READ_COMMANDS};
pub use connection::con::{Con, NodeAddr};
pub use connection::link::{
    redact_url, request_stop, stop_flag, stop_requested, use_ring_for_tls, Link, LinkOptions,
};
pub use escape::{escape_bytes, unescape};
pub use job::{Job, ServerFacts};
pub use keys::{validate_job_name, JobKeys, JOBS_KEY};
pub use library::{ensure_library, server_name, LIBRARY_SOURCE, LIBRARY_VERSION};
pub use partials::{
    MergeClaim, MergeInputs, MergePolicy, Merged, INLINE_BLOB, STAGE_PIECE, TOP_PER_PARTITION,
};
pub use reads::{
    id_number, job_names, register_jobs, scan_job_names, DeadTask, DoneRecord, HeldTask, JobEvent,
    WorkerView,
};
pub use retention::{is_expired, prune, Expired};
pub use spec::{
    live_window, Aggregation, BinaryFiles, JobSpec, Lease, Partitions, PlanFacts, TokenizerKind,
    DEFAULT_HISTORY, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS, DEFAULT_PARTITIONS, MIN_LEASE,
    READER_LIVE_WINDOW,
};
pub use status::{Status, STATUS_FIELDS};
pub use task::{Format, NewTask, Piece, Task};

impl Error {
    /// True when Redis refused a write because it is out of memory (`OOM`, under
    /// `maxmemory-policy noeviction`): nothing retried will get through until memory is raised or
    /// freed.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, Error::Redis { cause, .. } if cause.code() == Some("OOM"))
    }
}

/// Everything that can go wrong talking to a job in Redis.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis answered with an error, or could not be reached in time.
    // The cause's text is part of the message, so it is not also the error's `source` (error chains
    // would say it twice; thiserror takes a field named `source` for one, hence `cause`).
    #[error("redis at {addr}: {}", crate::connection::link::gist(.cause))]
    Redis {
        /// The Redis address, password hidden.
        addr: String,
        /// What Redis or the connection said.
        cause: redis::RedisError,
    },
    /// A Redis URL that cannot be used as it is written.
    #[error("'{url}' is not a Redis URL redcount can use: {detail}")]
    BadUrl {
        /// The URL, password hidden.
        url: String,
        /// What is wrong, and the form to use.
        detail: String,
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
    /// The job ended without a result: cancelled, or failed because a key it needs was lost.
    #[error("job '{job}' at redis {addr} {reason}")]
    Stopped {
        /// The job's name.
        job: String,
        /// The Redis address, password hidden.
        addr: String,
        /// How it ended and why, in the library's words.
        reason: String,
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
    /// A first connection to a single Redis failed for several seconds: nothing to wait for.
    #[error("cannot reach redis at {addr} ({detail}); is it running there, and is the URL (--redis or REDIS_URL) right?")]
    Unreachable {
        /// The Redis address, password hidden.
        addr: String,
        /// What the connection said.
        detail: String,
    },
    /// Redis wants a password the URL does not give, or refused the one it gives.
    #[error("redis at {addr} {detail}")]
    Auth {
        /// The Redis address, password hidden.
        addr: String,
        /// What went wrong and the form of URL that gives a password.
        detail: String,
    },
    /// The user asked to stop (Ctrl-C) while a call was waiting for Redis.
    #[error("interrupted while waiting for redis at {addr}")]
    Interrupted {
        /// The Redis address, password hidden.
        addr: String,
    },
    /// A job name that cannot be used in a key.
    #[error("invalid job name '{0}': use 1-100 characters, letters, digits, '-', '_' or '.'")]
    JobName(String),
}

/// Result of a protocol call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
