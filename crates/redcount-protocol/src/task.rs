//! A task: a byte range of one input file, as it travels through the `tasks` stream.

use std::path::PathBuf;

pub use redcount_input::Format;

/// A task the driver is about to enqueue; `seq` becomes its stream id `seq-0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// Its number; its stream id is `seq-0`.
    pub seq: u64,
    /// The input file (absolute).
    pub path: PathBuf,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
    /// How its bytes are read.
    pub format: Format,
}

/// A task delivered to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Stream id, `seq-0`.
    pub id: String,
    /// The input file (absolute).
    pub path: PathBuf,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
    /// How its bytes are read.
    pub format: Format,
    /// When the task entered the stream (ms, driver's clock).
    pub injected_ms: u64,
    /// 1 on first delivery, +1 on each re-delivery after a lease expired.
    pub attempts: u32,
}

impl Task {
    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True for an empty range (an empty file).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}
