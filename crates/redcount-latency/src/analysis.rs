//! A job's latency from its records: rows, percentiles, rolling median and recovery after each event,
//! and the CSV and plot files made from them. What `stream` reports at its end and `latency` later.

use std::path::Path;

use redcount_protocol::{DoneRecord, JobEvent};

use crate::rows::rows_from_done;
use crate::{
    percentiles, plot, recoveries, rolling_median, write_csv, LatencyRow, Percentiles, Recovery,
};

/// Everything measured about a job's latency.
pub struct Analysis {
    /// One row per committed file, by injection time.
    pub rows: Vec<LatencyRow>,
    /// The job's events, oldest first.
    pub events: Vec<JobEvent>,
    /// Files in the rolling median's window: about one second of injection.
    pub window: usize,
    /// Rolling median latency: (committed ms, median ms).
    pub median: Vec<(u64, f64)>,
    /// Latency percentiles.
    pub percentiles: Percentiles,
    /// Recovery after each event.
    pub recoveries: Vec<Recovery>,
}

impl Analysis {
    /// Analyses the `done` records and events of a job.
    pub fn new(done: &[DoneRecord], events: Vec<JobEvent>) -> Analysis {
        let rows = rows_from_done(done);
        let span_s = match (rows.first(), rows.last()) {
            (Some(a), Some(b)) => b.injected_at_ms.saturating_sub(a.injected_at_ms) as f64 / 1000.0,
            _ => 0.0,
        };
        let window = ((rows.len() as f64 / span_s.max(1.0)) as usize).clamp(5, 200);
        let median = rolling_median(&rows, window);
        Analysis {
            percentiles: percentiles(&rows),
            recoveries: recoveries(&rows, &events, window),
            rows,
            events,
            window,
            median,
        }
    }

    /// Time of the first injection (ms), the plots' zero.
    pub fn start_ms(&self) -> u64 {
        self.rows.first().map(|r| r.injected_at_ms).unwrap_or(0)
    }

    /// Committed files per second, from the first injection to the last commit.
    pub fn files_per_second(&self) -> f64 {
        let last = self
            .rows
            .iter()
            .map(|r| r.committed_at_ms)
            .max()
            .unwrap_or(0);
        self.rows.len() as f64 * 1000.0 / last.saturating_sub(self.start_ms()).max(1) as f64
    }

    /// Writes the CSV and draws the plot, where asked.
    pub fn write(
        &self,
        csv: Option<&Path>,
        plot_to: Option<&Path>,
        title: &str,
    ) -> anyhow::Result<()> {
        if let Some(path) = csv {
            write_csv(path, &self.rows)?;
        }
        if let Some(path) = plot_to {
            let timeline = plot::Timeline {
                title,
                rows: &self.rows,
                median: &self.median,
                events: &self.events,
                start_ms: self.start_ms(),
            };
            plot::plot(path, &timeline)?;
        }
        Ok(())
    }
}
