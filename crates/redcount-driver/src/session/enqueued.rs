//! What the driver remembers of the tasks it enqueued, so it can send any of them again after a
//! rollback: a batch job's plan whole (bounded by its inputs), or a stream's schedule, from which the
//! task of any seq is rebuilt (bounded however long the stream runs).

use std::borrow::Cow;
use std::time::Duration;

use redcount_protocol::NewTask;

/// A stream's injection schedule: batch k (0, 1, ...) holds seqs `k * per_batch + 1 ..`, is due at
/// `due_zero_ms + k * interval`, and seq s is the catalogue's file `(s - 1) % len`.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The files injected, in order, cycled through (each with seq 0 and no due time).
    pub catalogue: Vec<NewTask>,
    /// Files per batch.
    pub per_batch: u64,
    /// Time between batches.
    pub interval: Duration,
    /// When batch 0 was due (ms, the coordinator's clock).
    pub due_zero_ms: u64,
}

impl Schedule {
    /// The task of seq `seq` (from 1).
    pub fn task(&self, seq: u64) -> NewTask {
        let index = seq.saturating_sub(1);
        let file = &self.catalogue[(index % self.catalogue.len().max(1) as u64) as usize];
        let batch = u32::try_from(index / self.per_batch.max(1)).unwrap_or(u32::MAX);
        NewTask {
            seq,
            due_ms: Some(self.due_zero_ms + (self.interval * batch).as_millis() as u64),
            ..file.clone()
        }
    }
}

/// Every task enqueued so far (seqs `first..first + len`, without holes).
#[derive(Debug)]
pub(super) enum EnqueuedTasks {
    /// A batch job's tasks as planned (held once: the driver enqueues from here), of which the
    /// first `sent` have been enqueued.
    Plan { tasks: Vec<NewTask>, sent: usize },
    /// A stream's first `count` tasks of its schedule.
    Schedule { schedule: Schedule, count: u64 },
}

impl Default for EnqueuedTasks {
    fn default() -> EnqueuedTasks {
        EnqueuedTasks::Plan {
            tasks: Vec::new(),
            sent: 0,
        }
    }
}

impl EnqueuedTasks {
    /// Tasks enqueued.
    pub(super) fn len(&self) -> usize {
        match self {
            EnqueuedTasks::Plan { sent, .. } => *sent,
            EnqueuedTasks::Schedule { count, .. } => *count as usize,
        }
    }

    /// The seq of the first task.
    pub(super) fn first_seq(&self) -> u64 {
        match self {
            EnqueuedTasks::Plan { tasks, .. } => tasks.first().map_or(1, |t| t.seq),
            EnqueuedTasks::Schedule { .. } => 1,
        }
    }

    /// Tasks `from..to` (indexes, not seqs).
    pub(super) fn range(&self, from: usize, to: usize) -> Cow<'_, [NewTask]> {
        match self {
            EnqueuedTasks::Plan { tasks, .. } => Cow::Borrowed(&tasks[from..to]),
            EnqueuedTasks::Schedule { schedule, .. } => Cow::Owned(
                (from..to)
                    .map(|i| schedule.task(i as u64 + 1))
                    .collect::<Vec<_>>(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redcount_protocol::Format;
    use std::path::PathBuf;

    fn file(name: &str) -> NewTask {
        NewTask {
            seq: 0,
            path: PathBuf::from(name),
            start: 0,
            end: 10,
            format: Format::Text,
            version: None,
            more: Vec::new(),
            due_ms: None,
        }
    }

    #[test]
    fn a_schedule_rebuilds_every_task_as_it_was_injected() {
        let schedule = Schedule {
            catalogue: vec![file("a"), file("b"), file("c")],
            per_batch: 2,
            interval: Duration::from_millis(250),
            due_zero_ms: 1_000,
        };
        let got: Vec<(u64, String, Option<u64>)> = (1..=7)
            .map(|s| schedule.task(s))
            .map(|t| (t.seq, t.path.display().to_string(), t.due_ms))
            .collect();
        let want = [
            (1, "a", 1_000),
            (2, "b", 1_000),
            (3, "c", 1_250),
            (4, "a", 1_250),
            (5, "b", 1_500),
            (6, "c", 1_500),
            (7, "a", 1_750),
        ];
        let want: Vec<(u64, String, Option<u64>)> = want
            .iter()
            .map(|(s, p, d)| (*s, p.to_string(), Some(*d)))
            .collect();
        assert_eq!(got, want);
        let enqueued = EnqueuedTasks::Schedule { schedule, count: 7 };
        assert_eq!(enqueued.len(), 7);
        assert_eq!(enqueued.range(2, 4)[1].path, PathBuf::from("a"));
    }
}
