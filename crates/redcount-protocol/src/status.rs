//! A job's progress counters, as `rc_status` reports them.

use redis::Value;

use crate::reply;

/// Counters of a job at one moment. `finished` follows DESIGN.md's termination rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub state: String,
    pub run_id: String,
    pub tasks: u64,
    pub bytes: u64,
    pub delivered: u64,
    pub done: u64,
    pub done_bytes: u64,
    pub dead: u64,
    pub words: u64,
    /// Tasks computed more than once (committed after a re-delivery).
    pub recomputed: u64,
    /// Lease expiries that handed a task to another worker.
    pub redelivered: u64,
    /// Commits refused because another worker had committed the task first.
    pub duplicates: u64,
    /// Word increments applied in Redis (distinct words summed over commits).
    pub increments: u64,
    pub commits: u64,
    /// Tasks handed to a second worker because their first was straggling.
    pub speculated: u64,
    /// Events noted in the job.
    pub events: u64,
    pub created_ms: u64,
    pub sealed_ms: u64,
    pub in_flight: u64,
    pub live_workers: u64,
    pub distinct_words: u64,
    pub finished: bool,
}

impl Status {
    pub(crate) fn from_pairs(items: &[Value]) -> Status {
        let mut s = Status::default();
        for pair in items.chunks(2) {
            let [field, value] = pair else { continue };
            let field = reply::string(field).unwrap_or_default();
            let n = reply::uint(value).unwrap_or(0);
            match field.as_str() {
                "state" => s.state = reply::string(value).unwrap_or_default(),
                "run_id" => s.run_id = reply::string(value).unwrap_or_default(),
                "tasks" => s.tasks = n,
                "bytes" => s.bytes = n,
                "delivered" => s.delivered = n,
                "done" => s.done = n,
                "done_bytes" => s.done_bytes = n,
                "dead" => s.dead = n,
                "words" => s.words = n,
                "recomputed" => s.recomputed = n,
                "redelivered" => s.redelivered = n,
                "duplicates" => s.duplicates = n,
                "increments" => s.increments = n,
                "commits" => s.commits = n,
                "speculated" => s.speculated = n,
                "events" => s.events = n,
                "created_ms" => s.created_ms = n,
                "sealed_ms" => s.sealed_ms = n,
                "in_flight" => s.in_flight = n,
                "live_workers" => s.live_workers = n,
                "distinct_words" => s.distinct_words = n,
                "finished" => s.finished = n == 1,
                _ => {}
            }
        }
        s
    }
}
