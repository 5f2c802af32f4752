//! The latency of files that have left a job's bounded history (`--history`): each row is written
//! to the CSV as it leaves and counted in a histogram, so a stream that runs for days reports
//! percentiles over every file while holding only its newest rows.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::{histogram, LatencyRow, Percentiles};

/// Rows no longer held: the CSV they went to (if any) and their latencies.
pub struct Spill {
    csv: Option<(PathBuf, csv::Writer<File>)>,
    latencies: hdrhistogram::Histogram<u64>,
    first_due_ms: Option<u64>,
}

impl Spill {
    /// A spill writing rows to `csv` (created now, truncated) when given.
    pub fn new(csv: Option<&Path>) -> anyhow::Result<Spill> {
        let csv = match csv {
            Some(path) => Some((
                path.to_path_buf(),
                csv::Writer::from_path(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            )),
            None => None,
        };
        Ok(Spill {
            csv,
            latencies: histogram(),
            first_due_ms: None,
        })
    }

    /// Takes one row that leaves the history.
    pub fn push(&mut self, row: &LatencyRow) -> anyhow::Result<()> {
        // Recording fails only beyond the histogram's range, which auto-resizes.
        let _ = self.latencies.record(row.latency_ms);
        self.first_due_ms = Some(
            self.first_due_ms
                .map_or(row.due_at_ms, |d| d.min(row.due_at_ms)),
        );
        self.write(std::slice::from_ref(row))
    }

    /// Rows spilled so far.
    pub fn count(&self) -> u64 {
        self.latencies.len()
    }

    /// When the earliest spilled file was due.
    pub fn first_due_ms(&self) -> Option<u64> {
        self.first_due_ms
    }

    /// Percentiles over the spilled rows and `rows` together.
    pub fn percentiles_with(&self, rows: &[LatencyRow]) -> Percentiles {
        let mut all = self.latencies.clone();
        for r in rows {
            let _ = all.record(r.latency_ms);
        }
        Percentiles::from_histogram(&all)
    }

    /// Appends the rows still held (the newest) to the CSV and flushes it.
    pub fn finish(&mut self, rows: &[LatencyRow]) -> anyhow::Result<()> {
        self.write(rows)?;
        if let Some((path, w)) = &mut self.csv {
            w.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    fn write(&mut self, rows: &[LatencyRow]) -> anyhow::Result<()> {
        if let Some((path, w)) = &mut self.csv {
            for row in rows {
                w.serialize(row)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(due: u64, latency: u64) -> LatencyRow {
        LatencyRow {
            path: format!("f{due}"),
            due_at_ms: due,
            injected_at_ms: due,
            claimed_at_ms: due,
            committed_at_ms: due + latency,
            latency_ms: latency,
            worker: "w".into(),
            attempts: 1,
        }
    }

    #[test]
    fn spilled_rows_and_held_rows_make_one_csv_and_one_set_of_percentiles() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lat.csv");
        let mut spill = Spill::new(Some(&path)).expect("create");
        for d in 0..3 {
            spill.push(&row(d, 100)).expect("push");
        }
        let held = [row(3, 900), row(4, 100)];
        let p = spill.percentiles_with(&held);
        assert_eq!((p.count, p.max, p.p50), (5, 900, 100));
        assert_eq!(spill.first_due_ms(), Some(0));
        spill.finish(&held).expect("finish");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text.lines().count(),
            1 + 5,
            "one header, a row per file: {text}"
        );
        assert!(
            text.lines().nth(1).is_some_and(|l| l.starts_with("f0,")),
            "{text}"
        );
    }
}
