//! The worker: a stateless loop of claim -> count -> commit (see [`run_worker`]). Kill it at any
//! instant and nothing is lost or doubled: an uncommitted task's lease expires and another worker takes
//! it over; a commit is one atomic library call that applies a task's counts exactly once.

#![warn(missing_docs)]

mod count;
mod lease;
pub mod merge;
mod narrow;
mod options;
mod poison;
mod worker;

pub use lease::{HUNG_EXIT, OUT_OF_MEMORY_EXIT};
pub use narrow::{MAX_SPLIT_DEPTH, SMALLEST_SPLIT};
pub use options::WorkerOptions;
pub use worker::{run_worker, unique_worker_name, WorkerReport};
