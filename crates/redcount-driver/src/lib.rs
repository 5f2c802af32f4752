//! The driver, the other end of the data flow: it plans tasks from the inputs ([`plan`]), opens the job
//! on a private or given Redis and starts the worker processes ([`session`], [`pool`]), feeds the job
//! all at once ([`run`]) or at a fixed rate with faults injected ([`stream`], [`faults`]), waits with a
//! progress bar ([`wait`]), and reports the result ([`report`]).

#![warn(missing_docs)]

pub mod checkpoint;
pub mod embedded;
pub mod faults;
mod options;
pub mod plan;
pub mod planner;
pub mod pool;
pub mod report;
pub mod run;
pub mod session;
pub mod stream;
pub mod wait;

pub use options::{ChaosPoint, JobOptions, OnOpen, OpenGuard};
pub use run::{run, RunOptions};

/// CPUs this process may use (the default number of workers).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Exit status when the job finished but some inputs could not be processed.
pub const EXIT_INPUTS_FAILED: i32 = 3;
