//! What the dashboard shows, as the JSON the API returns and the events push: an overview of every
//! job, and the detail of one. Built by the reader ([`crate::reader`]), read by the pages.

use std::collections::BTreeMap;
use std::sync::Arc;

use redcount_latency::Percentiles;
use redcount_protocol::{DeadTask, JobEvent, Status, WorkerView};
use serde::Serialize;

/// Everything the reader knows at one moment; shared by every open page.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The jobs page.
    pub overview: Arc<Overview>,
    /// The job pages, by job name.
    pub details: BTreeMap<String, Arc<JobDetail>>,
}

/// The jobs page: one line per job.
#[derive(Debug, Default, Serialize)]
pub struct Overview {
    /// The Redis read (its URL without the password).
    pub redis: String,
    /// When the reader made this (ms since the epoch, this machine's clock).
    pub generated_ms: u64,
    /// Why the last read failed, if it did (the page shows the last good data with this).
    pub error: Option<String>,
    /// Every job, by name.
    pub jobs: Vec<JobSummary>,
}

/// One job in a line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobSummary {
    /// The job's name.
    pub name: String,
    /// `running`, `finished` or `failed` (as `redcount status` says it).
    pub phase: String,
    /// Whether tasks may still come (`open`) or not (`sealed`).
    pub state: String,
    /// A stream job (its tasks have due times) rather than a batch.
    pub stream: bool,
    /// Tasks enqueued.
    pub tasks: u64,
    /// Tasks committed.
    pub done: u64,
    /// Tasks given up.
    pub failed: u64,
    /// Bytes enqueued.
    pub bytes: u64,
    /// Bytes committed.
    pub done_bytes: u64,
    /// Done + failed over tasks, 0..1.
    pub progress: f64,
    /// Input bytes committed per second over the last few seconds.
    pub bytes_per_second: f64,
    /// Since the job was created, until it finished (ms).
    pub age_ms: u64,
}

/// The job page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobDetail {
    /// The job's line on the jobs page.
    pub summary: JobSummary,
    /// Every counter of `redcount status`.
    pub status: Status,
    /// Tasks enqueued and not yet delivered.
    pub waiting: u64,
    /// How long the oldest of those has waited since it was due (ms), so a stalled job does not
    /// look like an idle one.
    pub oldest_waiting_ms: Option<u64>,
    /// The most frequent words so far.
    pub top: Vec<(String, u64)>,
    /// The workers heard from, with what each holds.
    pub workers: Vec<WorkerView>,
    /// Fault and operator events (kill-worker, straggler, coordinator-change ...).
    pub events: Vec<JobEvent>,
    /// Commits per second of the coordinator's clock.
    pub throughput: Vec<Throughput>,
    /// Tasks given up, with their errors.
    pub failed: Vec<DeadTask>,
    /// Per-file latency (stream jobs: from when a file was due).
    pub latency: Latency,
}

/// What was committed in one second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    /// Start of the second (ms, the coordinator's clock).
    pub at_ms: u64,
    /// Tasks committed in it.
    pub tasks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Their words.
    pub words: u64,
}

/// Latency of the committed files: percentiles of the whole job, and the most recent files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Due -> committed.
    pub total: Percentiles,
    /// Due -> claimed (waiting for a worker).
    pub wait: Percentiles,
    /// Claimed -> committed (being counted and committed).
    pub run: Percentiles,
    /// The most recent files, oldest first.
    pub files: Vec<FilePoint>,
}

/// One committed file on the latency timeline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FilePoint {
    /// When it was due (ms, the coordinator's clock).
    pub due_ms: u64,
    /// Due -> committed (ms).
    pub latency_ms: u64,
    /// Due -> claimed (ms).
    pub wait_ms: u64,
    /// Deliveries it took.
    pub attempts: u64,
}
