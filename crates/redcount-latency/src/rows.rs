//! One latency row per committed file, from the job's `done` stream (written by the commit that
//! counted, never by a duplicate).

use std::path::Path;

use anyhow::Context;
use redcount_protocol::DoneRecord;

/// A file's journey: due, injected (accepted by the coordinator), claimed (by the worker that
/// committed it), committed. Latency counts from when the file was due, so a file that waited out an
/// outage before it could even be enqueued shows its whole wait (no coordinated omission).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LatencyRow {
    /// The input file.
    pub path: String,
    /// When it was due to arrive (ms; the stream's schedule on the coordinator's clock).
    pub due_at_ms: u64,
    /// When the coordinator accepted it (ms).
    pub injected_at_ms: u64,
    /// When its task was last claimed (ms).
    pub claimed_at_ms: u64,
    /// When it was committed (ms).
    pub committed_at_ms: u64,
    /// Committed minus due.
    pub latency_ms: u64,
    /// The worker that committed it.
    pub worker: String,
    /// Deliveries it took.
    pub attempts: u64,
}

impl From<&DoneRecord> for LatencyRow {
    fn from(d: &DoneRecord) -> LatencyRow {
        LatencyRow {
            path: d.path.clone(),
            due_at_ms: d.due_ms,
            injected_at_ms: d.injected_ms,
            claimed_at_ms: d.claimed_ms,
            committed_at_ms: d.committed_ms,
            latency_ms: d.committed_ms.saturating_sub(d.due_ms),
            worker: d.worker.clone(),
            attempts: d.attempts,
        }
    }
}

/// Rows sorted by due time, from the `done` records.
pub fn rows_from_done(done: &[DoneRecord]) -> Vec<LatencyRow> {
    let mut rows: Vec<LatencyRow> = done.iter().map(LatencyRow::from).collect();
    rows.sort_by_key(|r| (r.due_at_ms, r.committed_at_ms));
    rows
}

/// Writes `--latency-out`: a header and one row per file.
pub fn write_csv(path: &Path, rows: &[LatencyRow]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    for row in rows {
        w.serialize(row)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}
