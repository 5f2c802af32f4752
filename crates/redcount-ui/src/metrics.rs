//! `GET /metrics`: the jobs in Prometheus' text format, through `prometheus-client`. Counters follow
//! the job's totals in Redis (a counter only rises: a rollback that lowers a total shows as no
//! change until the job passes it again); the histograms take every commit record the reader reads.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::model::JobDetail;

/// The `job` label every series has.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    /// The job's name.
    pub job: String,
}

/// Fixed buckets, 5 ms to about 82 s: the same for every job, so they aggregate.
#[derive(Clone)]
struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.005, 2.0, 15))
    }
}

/// The labels of the job-state gauge: one series per state, 1 for the job's current one.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The job's name.
    pub job: String,
    /// One of [`STATES`].
    pub state: String,
}

/// Every state a job can be in, as `status` names them ([`redcount_protocol::Status::phase`]).
pub const STATES: [&str; 4] = ["running", "finished", "failed", "cancelled"];

type Counters = Family<JobLabel, Counter>;
type Gauges = Family<JobLabel, Gauge>;
type SecondsGauges = Family<JobLabel, Gauge<f64, AtomicU64>>;

/// Every series, registered once.
pub struct Metrics {
    registry: Registry,
    tasks: Counters,
    bytes: Counters,
    words: Counters,
    redeliveries: Counters,
    duplicates: Counters,
    failures: Counters,
    in_flight: Gauges,
    waiting: Gauges,
    live_workers: Gauges,
    job_state: Family<StateLabel, Gauge>,
    oldest_waiting: SecondsGauges,
    task_seconds: Family<JobLabel, Histogram, Buckets>,
    latency_seconds: Family<JobLabel, Histogram, Buckets>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry with every redcount series in it.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("redcount");
        let counter = |registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>| {
            let family = Counters::default();
            match unit {
                Some(unit) => registry.register_with_unit(name, help, unit, family.clone()),
                None => registry.register(name, help, family.clone()),
            }
            family
        };
        let tasks = counter(&mut registry, "tasks_committed", "Tasks committed", None);
        let bytes = counter(
            &mut registry,
            "input",
            "Input bytes committed",
            Some(Unit::Bytes),
        );
        let words = counter(&mut registry, "words", "Words counted", None);
        let redeliveries = counter(
            &mut registry,
            "redeliveries",
            "Lease expiries that handed a task to another worker",
            None,
        );
        let duplicates = counter(
            &mut registry,
            "duplicate_commits",
            "Commits refused because the task was already committed",
            None,
        );
        let failures = counter(&mut registry, "tasks_failed", "Tasks given up", None);
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let family = Gauges::default();
            registry.register(name, help, family.clone());
            family
        };
        let in_flight = gauge(
            &mut registry,
            "tasks_in_flight",
            "Tasks delivered, not yet committed",
        );
        let waiting = gauge(&mut registry, "tasks_waiting", "Tasks not yet delivered");
        let live_workers = gauge(&mut registry, "live_workers", "Workers heard from lately");
        let job_state = Family::<StateLabel, Gauge>::default();
        registry.register(
            "job_state",
            "1 for the job's state (running, finished, failed, cancelled), 0 for the others",
            job_state.clone(),
        );
        let oldest_waiting = SecondsGauges::default();
        registry.register_with_unit(
            "oldest_waiting_age",
            "How long the oldest undelivered task has waited since it was due",
            Unit::Seconds,
            oldest_waiting.clone(),
        );
        let task_seconds = Family::new_with_constructor(Buckets);
        registry.register_with_unit(
            "task_duration",
            "Claimed to committed, per task",
            Unit::Seconds,
            task_seconds.clone(),
        );
        let latency_seconds = Family::new_with_constructor(Buckets);
        registry.register_with_unit(
            "file_latency",
            "Due to committed, per task",
            Unit::Seconds,
            latency_seconds.clone(),
        );
        Metrics {
            registry,
            tasks,
            bytes,
            words,
            redeliveries,
            duplicates,
            failures,
            in_flight,
            waiting,
            live_workers,
            job_state,
            oldest_waiting,
            task_seconds,
            latency_seconds,
        }
    }

    /// Brings job `name`'s series up to `detail`.
    pub fn update(&self, name: &str, detail: &JobDetail) {
        let label = JobLabel {
            job: name.to_string(),
        };
        let s = &detail.status;
        let rise = |family: &Counters, total: u64| {
            let counter = family.get_or_create(&label);
            let now = counter.get();
            if total > now {
                counter.inc_by(total - now);
            }
        };
        rise(&self.tasks, s.done);
        rise(&self.bytes, s.done_bytes);
        rise(&self.words, s.words);
        rise(&self.redeliveries, s.redelivered);
        rise(&self.duplicates, s.duplicates);
        rise(&self.failures, s.failed_inputs());
        self.in_flight.get_or_create(&label).set(s.in_flight as i64);
        self.waiting
            .get_or_create(&label)
            .set(detail.waiting as i64);
        self.live_workers
            .get_or_create(&label)
            .set(s.live_workers as i64);
        for state in STATES {
            let series = StateLabel {
                job: name.to_string(),
                state: state.to_string(),
            };
            self.job_state
                .get_or_create(&series)
                .set(i64::from(s.phase() == state));
        }
        self.oldest_waiting
            .get_or_create(&label)
            .set(detail.oldest_waiting_ms.unwrap_or(0) as f64 / 1000.0);
    }

    /// Observes one new commit record of job `name` (the reader passes each record once).
    pub fn observe(&self, name: &str, d: &redcount_protocol::DoneRecord) {
        let label = JobLabel {
            job: name.to_string(),
        };
        self.task_seconds
            .get_or_create(&label)
            .observe(d.committed_ms.saturating_sub(d.claimed_ms) as f64 / 1000.0);
        self.latency_seconds
            .get_or_create(&label)
            .observe(d.committed_ms.saturating_sub(d.due_ms) as f64 / 1000.0);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
