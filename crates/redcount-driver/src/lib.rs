//! The driver, the other end of the data flow: it plans tasks from the inputs ([`plan`]), starts a
//! private Redis when none is given and the worker processes ([`pool`]), enqueues and seals the job,
//! waits with a progress bar ([`wait`]), and reports the result ([`report`]). [`run`] ties them together.

pub mod bench;
pub mod plan;
pub mod pool;
pub mod report;
pub mod run;
pub mod wait;

pub use run::{run, RunOptions, RunOutcome};

/// A consumer name no other worker has: host, pid, random suffix.
pub fn unique_worker_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        redcount_server::random_hex(3)
    )
}

/// Exit status when the job finished but some inputs could not be processed.
pub const EXIT_INPUTS_FAILED: i32 = 3;
