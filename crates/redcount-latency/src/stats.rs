//! Latency statistics: percentiles, p50/p99 bands per bucket of due time, and how long the system
//! took to recover after each fault event.

use redcount_protocol::JobEvent;

use crate::LatencyRow;

/// Summary of a set of latencies (ms).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    /// Files measured.
    pub count: u64,
    /// Median latency (ms).
    pub p50: u64,
    /// 90th percentile (ms).
    pub p90: u64,
    /// 99th percentile (ms).
    pub p99: u64,
    /// Largest latency (ms).
    pub max: u64,
    /// Mean latency (ms).
    pub mean: f64,
}

/// Percentiles of the rows' latencies (exact to 3 significant digits, via HdrHistogram).
pub fn percentiles(rows: &[LatencyRow]) -> Percentiles {
    let mut h = histogram();
    for r in rows {
        // Recording fails only for values beyond the histogram's range, which auto-resizes.
        let _ = h.record(r.latency_ms);
    }
    Percentiles::from_histogram(&h)
}

/// An empty, auto-resizing histogram of milliseconds, exact to 3 significant digits.
pub fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new(3)
        .unwrap_or_else(|_| unreachable!("3 significant digits is a valid precision"))
}

impl Percentiles {
    /// The summary of what `h` recorded (all zero when it is empty).
    pub fn from_histogram(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// Latency percentiles of the files due in one time bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Band {
    /// Start of the bucket (ms, due time).
    pub start_ms: u64,
    /// Files due in it.
    pub count: u64,
    /// Their median latency (ms).
    pub p50: u64,
    /// Their 99th percentile (ms).
    pub p99: u64,
}

/// Width of the buckets for a run whose files were due over `span_ms`: about 100 buckets, between
/// 100 ms and 1 s.
pub fn bucket_ms(span_ms: u64) -> u64 {
    (span_ms / 100).clamp(100, 1_000)
}

/// p50 and p99 per bucket of `bucket` ms of due time (rows sorted by due time). A bucket in which
/// no file was due is left out, so lines drawn through the bands break there instead of bridging
/// a gap.
pub fn bands(rows: &[LatencyRow], bucket: u64) -> Vec<Band> {
    let bucket = bucket.max(1);
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let start = rows[i].due_at_ms / bucket * bucket;
        let mut latencies = Vec::new();
        while i < rows.len() && rows[i].due_at_ms < start + bucket {
            latencies.push(rows[i].latency_ms);
            i += 1;
        }
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        out.push(Band {
            start_ms: start,
            count: latencies.len() as u64,
            p50: at(0.50),
            p99: at(0.99),
        });
    }
    out
}

/// How the system fared after one event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Recovery {
    /// The event recovered from.
    pub event: JobEvent,
    /// p99 latency of the files committed in the 2 s before the event (ms); None when there were
    /// none.
    pub baseline_ms: Option<f64>,
    /// Highest bucket p99 from the event on (ms).
    pub peak_ms: f64,
    /// From the event until the bucket p99 is back within the band (1.5 x the baseline, at least
    /// 20 ms above it) for good: 0 when it never left, None when it had not come back by the end.
    pub recovery_ms: Option<u64>,
}

impl Recovery {
    /// One line for people: the event, when (s after `start_ms`), the latency before and at worst, and
    /// how long until it was back.
    pub fn describe(&self, start_ms: u64) -> String {
        let at = self.event.at_ms.saturating_sub(start_ms) as f64 / 1000.0;
        let baseline = self
            .baseline_ms
            .map(|b| format!("p99 {b:.0} ms"))
            .unwrap_or_else(|| "none".into());
        let recovered = match self.recovery_ms {
            Some(0) => "no visible impact".to_string(),
            Some(ms) => format!("recovered after {:.2} s", ms as f64 / 1000.0),
            None => "not recovered before the end".to_string(),
        };
        format!(
            "event {} at {at:.2} s ({}): baseline {baseline}, peak p99 {:.0} ms, {recovered}",
            self.event.kind, self.event.detail, self.peak_ms
        )
    }
}

/// Recovery after each event, from the p99 bands. The baseline is what files committed in the 2 s
/// before the event waited (a file due before the event but delayed by it is not "before"); from the
/// bucket holding the event on, the last bucket whose p99 is out of the band marks the end of the
/// impact, and recovery is the start of the next bucket.
pub fn recoveries(rows: &[LatencyRow], events: &[JobEvent], bucket: u64) -> Vec<Recovery> {
    let bands = bands(rows, bucket);
    events
        .iter()
        .map(|event| {
            let mut before: Vec<u64> = rows
                .iter()
                .filter(|r| {
                    r.committed_at_ms < event.at_ms && r.committed_at_ms + 2_000 >= event.at_ms
                })
                .map(|r| r.latency_ms)
                .collect();
            before.sort_unstable();
            let baseline = (!before.is_empty()).then(|| {
                before[((before.len() as f64 * 0.99).ceil() as usize).clamp(1, before.len()) - 1]
                    as f64
            });
            let after: Vec<&Band> = bands
                .iter()
                .filter(|b| b.start_ms + bucket > event.at_ms)
                .collect();
            let peak_ms = after.iter().map(|b| b.p99 as f64).fold(0.0, f64::max);
            let recovery_ms = baseline.and_then(|base| {
                let band = (base * 1.5).max(base + 20.0);
                match after.iter().rposition(|b| b.p99 as f64 > band) {
                    None => Some(0),
                    Some(last) if last + 1 < after.len() => {
                        Some(after[last + 1].start_ms.saturating_sub(event.at_ms))
                    }
                    Some(_) => None,
                }
            });
            Recovery {
                event: event.clone(),
                baseline_ms: baseline,
                peak_ms,
                recovery_ms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(due: u64, latency: u64) -> LatencyRow {
        LatencyRow {
            path: String::new(),
            due_at_ms: due,
            injected_at_ms: due,
            claimed_at_ms: due,
            committed_at_ms: due + latency,
            latency_ms: latency,
            worker: String::new(),
            attempts: 1,
        }
    }

    #[test]
    fn percentiles_of_one_to_a_hundred() {
        let rows: Vec<_> = (1..=100).map(|i| row(i, i)).collect();
        let p = percentiles(&rows);
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.max),
            (100, 50, 90, 99, 100)
        );
    }

    #[test]
    fn bands_are_per_bucket_of_due_time_and_skip_empty_buckets() {
        let mut rows: Vec<_> = (0..10).map(|i| row(i * 10, 10 + i)).collect();
        rows.extend((0..10).map(|i| row(300 + i * 10, 100)));
        let b = bands(&rows, 100);
        assert_eq!(b.len(), 2, "nothing was due in 100..300: no band there");
        assert_eq!(
            (b[0].start_ms, b[0].count, b[0].p50, b[0].p99),
            (0, 10, 14, 19)
        );
        assert_eq!((b[1].start_ms, b[1].p50), (300, 100));
    }

    /// A synthetic outage: files due every 10 ms wait 20 ms, then for files due in 5.0..7.0 s the
    /// coordinator is away until 7.0 s (each waits until 7.0 s plus 20 ms), then all is well again.
    fn outage() -> Vec<LatencyRow> {
        (0..1_000u64)
            .map(|i| {
                let due = i * 10;
                let latency = if (5_000..7_000).contains(&due) {
                    7_000 - due + 20
                } else {
                    20
                };
                row(due, latency)
            })
            .collect()
    }

    #[test]
    fn recovery_is_measured_from_the_event_to_the_end_of_the_impact_on_the_p99_band() {
        let rows = outage();
        let event = JobEvent {
            at_ms: 5_000,
            kind: "kill-redis".into(),
            detail: String::new(),
        };
        let r = &recoveries(&rows, std::slice::from_ref(&event), 100)[0];
        assert_eq!(r.baseline_ms, Some(20.0));
        assert!(
            r.peak_ms >= 1_990.0,
            "the first files due in the outage waited 2 s: {r:?}"
        );
        // Files due from 7.0 s on are fine again: recovered 2.0 s after the event.
        assert_eq!(r.recovery_ms, Some(2_000));
        let calm = JobEvent {
            at_ms: 8_000,
            ..event
        };
        assert_eq!(recoveries(&rows, &[calm], 100)[0].recovery_ms, Some(0));
    }

    #[test]
    fn no_recovery_when_latency_stays_high() {
        let mut rows: Vec<_> = (0..100).map(|i| row(i * 10, 10)).collect();
        rows.extend((100..200).map(|i| row(i * 10, 1000)));
        let event = JobEvent {
            at_ms: 1_050,
            kind: "straggler".into(),
            detail: String::new(),
        };
        assert_eq!(recoveries(&rows, &[event], 100)[0].recovery_ms, None);
    }
}
