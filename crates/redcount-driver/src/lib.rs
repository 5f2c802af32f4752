//! The driver, the other end of the data flow: it plans tasks from the inputs ([`plan`]), opens the job
//! on a private or given Redis and starts the worker processes ([`session`], [`pool`]), feeds the job
//! all at once ([`run`]) or at a fixed rate with faults injected ([`stream`], [`faults`]), waits with a
//! progress bar ([`wait`]), and reports the result ([`report`]).

pub mod checkpoint;
pub mod embedded;
pub mod faults;
pub mod plan;
pub mod pool;
pub mod report;
pub mod run;
pub mod session;
pub mod stream;
pub mod wait;

pub use run::{run, RunOptions};
pub use session::JobOptions;

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
