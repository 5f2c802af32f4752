//! A job's progress counters, as `rc_status` reports them.

use redis::Value;

use crate::reply;

/// The fields of `rc_status`'s reply, in order: the meta-hash counters the library lists as its
/// `STATUS_FIELDS`, then those it computes. A test checks this against library/reads.lua and
/// [`Status::from_pairs`].
pub const STATUS_FIELDS: &[&str] = &[
    "state",
    "tasks",
    "bytes",
    "delivered",
    "done",
    "done_bytes",
    "dead",
    "words",
    "recomputed",
    "redelivered",
    "duplicates",
    "increments",
    "commits",
    "created_ms",
    "sealed_ms",
    "run_id",
    "speculated",
    "events",
    "partials",
    "merges",
    "finished_ms",
    "dead_records",
    "stop_reason",
    "splits",
    // Computed by the library, not stored:
    "in_flight",
    "live_workers",
    "distinct_words",
    "finished",
    "now_ms",
];

/// Counters of a job at one moment. `finished` follows the termination rule (docs/PROTOCOL.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// `open` (tasks may still come) or `sealed`.
    pub state: String,
    /// The run that created the job (the driver checks it is still its own).
    pub run_id: String,
    /// Tasks enqueued.
    pub tasks: u64,
    /// Bytes of all tasks.
    pub bytes: u64,
    /// Tasks delivered at least once.
    pub delivered: u64,
    /// Tasks committed.
    pub done: u64,
    /// Bytes of the committed tasks.
    pub done_bytes: u64,
    /// Tasks given up.
    pub dead: u64,
    /// Words counted (with repetitions).
    pub words: u64,
    /// Tasks computed more than once (committed after a re-delivery).
    pub recomputed: u64,
    /// Lease expiries that handed a task to another worker.
    pub redelivered: u64,
    /// Commits refused because another worker had committed the task first.
    pub duplicates: u64,
    /// Word increments applied in Redis (distinct words summed over commits).
    pub increments: u64,
    /// Commits applied.
    pub commits: u64,
    /// Tasks handed to a second worker because their first was straggling.
    pub speculated: u64,
    /// Events noted in the job.
    pub events: u64,
    /// Partial-count blobs committed and not yet merged.
    pub partials: u64,
    /// Merges committed.
    pub merges: u64,
    /// When the job was created (ms).
    pub created_ms: u64,
    /// When it was sealed (ms), 0 while open.
    pub sealed_ms: u64,
    /// Tasks delivered and not yet committed or given up.
    pub in_flight: u64,
    /// Workers heard from within the live window.
    pub live_workers: u64,
    /// Distinct words in the result so far.
    pub distinct_words: u64,
    /// Sealed, all delivered, no lease left, and done + dead = tasks.
    pub finished: bool,
    /// When it became finished (ms, the coordinator's clock; 0 while it runs).
    pub finished_ms: u64,
    /// Inputs given up, each named in the `dead` stream: whole tasks, and single files of packed
    /// tasks (which `dead` does not count).
    pub dead_records: u64,
    /// Why a cancelled or failed job ended (empty otherwise).
    pub stop_reason: String,
    /// Tasks split in two because their workers fell silent counting them alone: each is one
    /// more task to settle (see [`Status::to_settle`]).
    pub splits: u64,
    /// The coordinator's clock when it answered (ms), so a driver can put its schedule on it.
    pub now_ms: u64,
}

impl Status {
    /// The job's phase in the words every command and the dashboard use: `running` until it is
    /// finished, then `finished`, or `failed` when some of its inputs were given up; `cancelled`,
    /// or `failed` when it ended without a result (see [`Status::stopped`]).
    pub fn phase(&self) -> &'static str {
        if let Some(kind) = self.stopped() {
            return kind;
        }
        match (self.finished, self.failed_inputs()) {
            (false, _) => "running",
            (true, 0) => "finished",
            (true, _) => "failed",
        }
    }

    /// `cancelled` or `failed` when the job ended without a result (`rc_stop`): no count of it is
    /// a result, and [`Status::stop_reason`] says why.
    pub fn stopped(&self) -> Option<&'static str> {
        match self.state.as_str() {
            "cancelled" => Some("cancelled"),
            "failed" => Some("failed"),
            _ => None,
        }
    }

    /// Inputs given up, each named in the `dead` stream (a job written before `dead_records`
    /// counted only whole tasks).
    pub fn failed_inputs(&self) -> u64 {
        self.dead_records.max(self.dead)
    }

    /// Sealed, and every task committed or given up: all that can be left is merging partials.
    pub fn tasks_all_done(&self) -> bool {
        self.state == "sealed" && self.done + self.dead == self.to_settle()
    }

    /// Tasks to commit or give up before the job is finished: those enqueued, and one more for
    /// every split (a task split in two is settled as two).
    pub fn to_settle(&self) -> u64 {
        self.tasks + self.splits
    }

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
                "partials" => s.partials = n,
                "merges" => s.merges = n,
                "created_ms" => s.created_ms = n,
                "sealed_ms" => s.sealed_ms = n,
                "in_flight" => s.in_flight = n,
                "live_workers" => s.live_workers = n,
                "distinct_words" => s.distinct_words = n,
                "finished" => s.finished = n == 1,
                "now_ms" => s.now_ms = n,
                "finished_ms" => s.finished_ms = n,
                "dead_records" => s.dead_records = n,
                "stop_reason" => s.stop_reason = reply::string(value).unwrap_or_default(),
                "splits" => s.splits = n,
                _ => {}
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LIBRARY_SOURCE;

    #[test]
    fn the_field_list_is_the_librarys_and_every_field_is_read() {
        // library/reads.lua: `local STATUS_FIELDS = { 'state', 'tasks', ... }`, then five computed ones.
        let start = LIBRARY_SOURCE
            .find("local STATUS_FIELDS = {")
            .expect("the library lists STATUS_FIELDS");
        let list = &LIBRARY_SOURCE[start..];
        let list = &list[list.find('{').unwrap_or(0)..list.find('}').unwrap_or(0)];
        let stored: Vec<&str> = list.split('\'').skip(1).step_by(2).collect();
        assert_eq!(stored, STATUS_FIELDS[..stored.len()]);
        assert_eq!(STATUS_FIELDS.len(), stored.len() + 5);

        // Each field given a value of its own must change the parsed status.
        for (i, field) in STATUS_FIELDS.iter().enumerate() {
            let value = if *field == "finished" {
                "1".to_string()
            } else {
                (i + 1).to_string()
            };
            let parsed = Status::from_pairs(&[
                Value::BulkString(field.as_bytes().to_vec()),
                Value::BulkString(value.into_bytes()),
            ]);
            assert_ne!(parsed, Status::default(), "from_pairs ignores '{field}'");
        }
    }
}
