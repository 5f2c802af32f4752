//! A job's latency from its records: rows, percentiles, p50/p99 bands over due time and recovery
//! after each event, and the CSV and plot files made from them. What `stream` reports at its end and
//! `latency` later.

use std::path::Path;

use redcount_protocol::{DoneRecord, JobEvent};

use crate::rows::rows_from_done;
use crate::spill::Spill;
use crate::{
    bands, bucket_ms, percentiles, plot, recoveries, write_csv, Band, LatencyRow, Percentiles,
    Recovery,
};

/// Everything measured about a job's latency.
pub struct Analysis {
    /// One row per committed file still held, by due time.
    pub rows: Vec<LatencyRow>,
    /// The job's events, oldest first.
    pub events: Vec<JobEvent>,
    /// Width of the bands' buckets (ms of due time).
    pub bucket_ms: u64,
    /// p50 and p99 per bucket (buckets with no file due are absent).
    pub bands: Vec<Band>,
    /// Latency percentiles.
    pub percentiles: Percentiles,
    /// Recovery after each event.
    pub recoveries: Vec<Recovery>,
    /// Files measured, spilled ones included.
    files: u64,
    /// When the first file was due, spilled ones included.
    first_due_ms: Option<u64>,
}

impl Analysis {
    /// Analyses the `done` records and events of a job.
    pub fn new(done: &[DoneRecord], events: Vec<JobEvent>) -> Analysis {
        let rows = rows_from_done(done);
        let span = match (rows.first(), rows.last()) {
            (Some(a), Some(b)) => b.due_at_ms.saturating_sub(a.due_at_ms),
            _ => 0,
        };
        let bucket = bucket_ms(span);
        Analysis {
            percentiles: percentiles(&rows),
            recoveries: recoveries(&rows, &events, bucket),
            bands: bands(&rows, bucket),
            bucket_ms: bucket,
            files: rows.len() as u64,
            first_due_ms: rows.first().map(|r| r.due_at_ms),
            rows,
            events,
        }
    }

    /// Counts the files that left the history too: percentiles and throughput then cover every
    /// file; bands, recoveries and the plot the rows still held.
    pub fn include_spilled(&mut self, spill: &Spill) {
        if spill.count() == 0 {
            return;
        }
        self.percentiles = spill.percentiles_with(&self.rows);
        self.files = self.percentiles.count;
        self.first_due_ms = match (spill.first_due_ms(), self.first_due_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// When the first file was due (ms), the plots' zero.
    pub fn start_ms(&self) -> u64 {
        self.rows.first().map(|r| r.due_at_ms).unwrap_or(0)
    }

    /// Committed files per second, from the first due time to the last commit.
    pub fn files_per_second(&self) -> f64 {
        let last = self
            .rows
            .iter()
            .map(|r| r.committed_at_ms)
            .max()
            .unwrap_or(0);
        let first = self.first_due_ms.unwrap_or(0);
        self.files as f64 * 1000.0 / last.saturating_sub(first).max(1) as f64
    }

    /// Writes the CSV and draws the plot (with a log latency axis when `log_y`), where asked.
    pub fn write(
        &self,
        csv: Option<&Path>,
        plot_to: Option<&Path>,
        title: &str,
        log_y: bool,
    ) -> anyhow::Result<()> {
        if let Some(path) = csv {
            write_csv(path, &self.rows)?;
        }
        if let Some(path) = plot_to {
            let timeline = plot::Timeline {
                title,
                rows: &self.rows,
                bands: &self.bands,
                bucket_ms: self.bucket_ms,
                events: &self.events,
                start_ms: self.start_ms(),
                log_y,
            };
            plot::plot(path, &timeline)?;
        }
        Ok(())
    }
}
