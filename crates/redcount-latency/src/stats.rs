//! Latency statistics: percentiles, a rolling median over injection time, and how long the system
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
    let Ok(mut h) = hdrhistogram::Histogram::<u64>::new(3) else {
        return Percentiles::default();
    };
    for r in rows {
        // Recording fails only for values beyond the histogram's range, which auto-resizes.
        let _ = h.record(r.latency_ms);
    }
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

/// Median of the latencies of the last `window` rows at each row (rows sorted by injection time):
/// (injected_at_ms, median ms).
pub fn rolling_median(rows: &[LatencyRow], window: usize) -> Vec<(u64, f64)> {
    let window = window.max(1);
    let mut sorted: Vec<u64> = Vec::with_capacity(window);
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let at = sorted.partition_point(|&v| v < row.latency_ms);
        sorted.insert(at, row.latency_ms);
        if i >= window {
            let old = rows[i - window].latency_ms;
            let at = sorted.partition_point(|&v| v < old);
            sorted.remove(at);
        }
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2] as f64
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0
        };
        out.push((row.injected_at_ms, median));
    }
    out
}

/// How the system fared after one event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Recovery {
    /// The event recovered from.
    pub event: JobEvent,
    /// Rolling median latency just before the event (ms); None when nothing was injected before it.
    pub baseline_ms: Option<f64>,
    /// Highest rolling median after the event (ms).
    pub peak_ms: f64,
    /// From the event until files injected are back within 20% of the baseline (ms): 0 when latency
    /// never left that band, None when it had not come back by the end of the stream.
    pub recovery_ms: Option<u64>,
}

impl Recovery {
    /// One line for people: the event, when (s after `start_ms`), the latency before and at worst, and
    /// how long until it was back.
    pub fn describe(&self, start_ms: u64) -> String {
        let at = self.event.at_ms.saturating_sub(start_ms) as f64 / 1000.0;
        let baseline = self
            .baseline_ms
            .map(|b| format!("{b:.0} ms"))
            .unwrap_or_else(|| "none".into());
        let recovered = match self.recovery_ms {
            Some(0) => "no visible impact".to_string(),
            Some(ms) => format!("recovered after {:.2} s", ms as f64 / 1000.0),
            None => "not recovered before the end".to_string(),
        };
        format!(
            "event {} at {at:.2} s ({}): baseline {baseline}, peak {:.0} ms, {recovered}",
            self.event.kind, self.event.detail, self.peak_ms
        )
    }
}

/// Recovery after each event. "Back to normal" means the rolling median is within 20% of its level
/// just before the event, with a floor of 5 ms so that a 10 ms baseline's jitter is not an impact.
pub fn recoveries(rows: &[LatencyRow], events: &[JobEvent], window: usize) -> Vec<Recovery> {
    let medians = rolling_median(rows, window);
    events
        .iter()
        .map(|event| {
            let before = medians
                .iter()
                .rev()
                .find(|(t, _)| *t < event.at_ms)
                .map(|(_, m)| *m);
            let after: Vec<&(u64, f64)> =
                medians.iter().filter(|(t, _)| *t >= event.at_ms).collect();
            let peak_ms = after.iter().map(|(_, m)| *m).fold(0.0, f64::max);
            let recovery_ms = before.and_then(|baseline| {
                let band = (baseline * 1.2).max(baseline + 5.0);
                match after.iter().position(|(_, m)| *m > band) {
                    None => Some(0),
                    Some(hit) => after[hit..]
                        .iter()
                        .find(|(_, m)| *m <= band)
                        .map(|(t, _)| t - event.at_ms),
                }
            });
            Recovery {
                event: event.clone(),
                baseline_ms: before,
                peak_ms,
                recovery_ms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(injected: u64, latency: u64) -> LatencyRow {
        LatencyRow {
            path: String::new(),
            injected_at_ms: injected,
            claimed_at_ms: injected,
            committed_at_ms: injected + latency,
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
    fn rolling_median_follows_a_step() {
        let rows: Vec<_> = (0..10)
            .map(|i| row(i, if i < 5 { 10 } else { 100 }))
            .collect();
        let m = rolling_median(&rows, 3);
        assert_eq!(m[4].1, 10.0);
        assert_eq!(m[6].1, 100.0);
        assert_eq!(
            m[5].1, 10.0,
            "one slow point in a window of three does not move the median"
        );
    }

    #[test]
    fn recovery_is_measured_from_the_event_to_the_return_within_20_percent() {
        // 20 ms baseline, a spike to 500 ms for files injected 1000..1400, back to 22 ms after.
        let mut rows: Vec<_> = (0..50).map(|i| row(i * 20, 20)).collect();
        rows.extend((50..70).map(|i| row(i * 20, 500)));
        rows.extend((70..100).map(|i| row(i * 20, 22)));
        let event = JobEvent {
            at_ms: 990,
            kind: "kill-worker".into(),
            detail: String::new(),
        };
        let r = &recoveries(&rows, std::slice::from_ref(&event), 3)[0];
        assert_eq!(r.baseline_ms, Some(20.0));
        assert_eq!(r.peak_ms, 500.0);
        // The median of 3 is back under 25 ms at the second fast file (injected at 1420).
        assert_eq!(r.recovery_ms, Some(1420 - 990));
        let calm = JobEvent {
            at_ms: 1500,
            ..event
        };
        assert_eq!(recoveries(&rows, &[calm], 3)[0].recovery_ms, Some(0));
    }

    #[test]
    fn no_recovery_when_latency_stays_high() {
        let mut rows: Vec<_> = (0..10).map(|i| row(i * 10, 10)).collect();
        rows.extend((10..20).map(|i| row(i * 10, 1000)));
        let event = JobEvent {
            at_ms: 95,
            kind: "straggler".into(),
            detail: String::new(),
        };
        assert_eq!(recoveries(&rows, &[event], 3)[0].recovery_ms, None);
    }
}
