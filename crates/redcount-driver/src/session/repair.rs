//! Keeping a job whole while its coordinator crashes. The driver remembers every task it enqueued and
//! whether it sealed, and on every status check repairs what a crash undid: no job at all (Redis
//! restarted without data) -> create it again with the same run id and re-send everything; fewer
//! tasks than enqueued (a restore from an older checkpoint) -> re-send from where the job's run of
//! tasks ends, and seal again. It follows the `done` stream ([`CommitLog`]) to count tasks committed, rolled back and
//! committed again.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;
use redcount_protocol::{Enqueued, Error as ProtocolError, NewTask, Now, Status};

use super::{server_run_id, Session};

/// Tasks enqueued per `enqueue` call.
const ENQUEUE_CHUNK: usize = 1000;

/// What a status check says must be repaired.
#[derive(Debug, PartialEq, Eq)]
enum Repair {
    /// The job holds everything the driver sent.
    Nothing,
    /// A rollback lost tasks (or the seal): send every task again, then seal again if it was sealed.
    Resend,
}

/// Decides from a job's status what a crash undid, given what the driver enqueued and sealed.
fn repair_for(status: &Status, enqueued: usize, sealed: bool) -> Repair {
    if status.tasks < enqueued as u64 || (sealed && status.state != "sealed") {
        Repair::Resend
    } else {
        Repair::Nothing
    }
}

/// What the `done` stream has said so far: task id -> the distinct times it was committed (two or
/// more: committed, undone by a rollback or a lost Redis, committed again), and how many records of
/// the current Redis state were read.
#[derive(Debug, Default)]
pub(super) struct CommitLog {
    committed: HashMap<String, Vec<u64>>,
    cursor: u64,
}

impl CommitLog {
    /// Records the next record of the `done` stream.
    fn record(&mut self, task: String, committed_ms: u64) {
        self.cursor += 1;
        let times = self.committed.entry(task).or_default();
        if !times.contains(&committed_ms) {
            times.push(committed_ms);
        }
    }

    /// The stream may have been rolled back and rewritten: read it again from the start (records
    /// already seen are recognised by their commit time).
    fn reread(&mut self) {
        self.cursor = 0;
    }

    /// Tasks whose commit was seen more than once.
    fn recomputed(&self) -> u64 {
        self.committed.values().filter(|t| t.len() > 1).count() as u64
    }
}

/// Most rounds of re-sending after the job lost tasks or vanished, within one enqueue or seal.
const SEND_ROUNDS: usize = 20;

impl Session {
    /// Enqueues tasks (remembered, to re-send after a rollback). The job's tasks are always an
    /// unbroken run 1..n: when Redis lost some meanwhile (it answers with where its run ends), those
    /// are sent again first, so no chunk ever lands above a hole.
    pub fn enqueue(&mut self, tasks: &[NewTask]) -> anyhow::Result<()> {
        let from = self.tasks.len();
        self.tasks.extend_from_slice(tasks);
        self.send_from(from)
    }

    /// Sends the remembered tasks from index `next` on, in chunks, going back to wherever the job's
    /// run of tasks really ends whenever Redis says it lost some (or the whole job).
    fn send_from(&mut self, mut next: usize) -> anyhow::Result<()> {
        let mut rounds = 0;
        while next < self.tasks.len() {
            let end = (next + ENQUEUE_CHUNK).min(self.tasks.len());
            let back_to = match self.job.enqueue(Now::Coordinator, &self.tasks[next..end]) {
                Ok(Enqueued::Added { .. }) => {
                    next = end;
                    continue;
                }
                Ok(Enqueued::Gap { last_seq }) => {
                    tracing::warn!(
                        "redis holds tasks 1..{last_seq} of job '{}' only (a rollback): sending the \
                         rest again from there",
                        self.name
                    );
                    self.index_after(last_seq)?
                }
                Err(ProtocolError::NoJob { .. }) => {
                    self.create_again()?;
                    0
                }
                Err(e) => return Err(anyhow::Error::new(e).context("enqueueing tasks")),
            };
            rounds += 1;
            if rounds > SEND_ROUNDS {
                bail!(
                    "job '{}' kept losing tasks while they were sent; is Redis crashing in a loop?",
                    self.name
                );
            }
            next = back_to;
        }
        Ok(())
    }

    /// Index in `tasks` of the task after seq `last_seq` (seqs run 1..n without holes).
    fn index_after(&self, last_seq: u64) -> anyhow::Result<usize> {
        let first = self.tasks.first().map_or(1, |t| t.seq);
        let index = last_seq.saturating_sub(first - 1) as usize;
        if index > self.tasks.len() {
            bail!(
                "job '{}' holds {last_seq} tasks but {} were enqueued: something else writes to it",
                self.name,
                self.tasks.len()
            );
        }
        Ok(index)
    }

    /// Creates the job again after Redis lost it (it restarted without its data).
    fn create_again(&mut self) -> anyhow::Result<()> {
        tracing::warn!("job '{}' is gone from redis (restarted without its data): running it again from the start", self.name);
        self.job
            .create(Now::Coordinator, &self.run_id, &self.spec)?;
        self.recreated += 1;
        self.commits.reread();
        Ok(())
    }

    /// Creates the job again (Redis lost it) and re-sends every task, re-sealing if it was sealed.
    fn recreate(&mut self) -> anyhow::Result<()> {
        self.create_again()?;
        self.send_from(0)?;
        if self.sealed {
            self.seal()?;
        }
        Ok(())
    }

    /// Seals the job with the number of tasks planned, re-sending first whatever Redis lost
    /// meanwhile: the library refuses a seal over fewer tasks.
    pub fn seal(&mut self) -> anyhow::Result<()> {
        self.sealed = true;
        for _ in 0..SEND_ROUNDS {
            let (sealed, there) = match self.job.seal(Now::Coordinator, self.tasks.len() as u64) {
                Ok(answer) => answer,
                Err(ProtocolError::NoJob { .. }) => {
                    self.create_again()?;
                    self.send_from(0)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if sealed {
                return Ok(());
            }
            tracing::warn!(
                "redis holds {there} of {} tasks (a rollback): sending the rest again",
                self.tasks.len()
            );
            let from = self.index_after(there)?;
            self.send_from(from)?;
        }
        bail!(
            "job '{}' kept losing tasks while being sealed; is Redis crashing in a loop?",
            self.name
        )
    }

    /// The job's status, after repairing what a Redis crash undid: the job re-created when Redis lost
    /// it, tasks re-sent when a rollback lost some, the seal renewed.
    pub fn status(&mut self) -> anyhow::Result<Status> {
        let live_window = redcount_protocol::live_window(self.spec.lease);
        let status = match self.job.status(Now::Coordinator, live_window) {
            Ok(s) => s,
            Err(ProtocolError::NoJob { .. }) => {
                self.recreate()?;
                self.job.status(Now::Coordinator, live_window)?
            }
            Err(e) => return Err(e.into()),
        };
        if status.run_id != self.run_id {
            bail!(
                "job '{}' at {} now belongs to another run ({}); stopping",
                self.name,
                self.job.addr(),
                status.run_id
            );
        }
        let run = server_run_id(&mut self.job)?;
        if run != self.server_run {
            if !self.server_run.is_empty() {
                tracing::warn!(
                    "redis restarted; re-reading the job's commits ({} now)",
                    status.done
                );
                // For the dashboard's and the latency plot's markers.
                let detail = format!(
                    "the coordinator changed (a restart, failover or new leader); {} tasks committed",
                    status.done
                );
                crate::faults::note(&mut self.job, "coordinator-change", &detail);
            }
            self.server_run = run;
            self.commits.reread();
        }
        match repair_for(&status, self.tasks.len(), self.sealed) {
            Repair::Nothing => Ok(status),
            Repair::Resend => {
                tracing::warn!(
                    "redis holds {} of {} tasks (a rollback): sending them again",
                    status.tasks,
                    self.tasks.len()
                );
                let from = self.index_after(status.tasks)?;
                self.send_from(from)?;
                if self.sealed {
                    self.seal()?;
                }
                Ok(self.job.status(Now::Coordinator, live_window)?)
            }
        }
    }

    /// Waits up to `timeout` for commits and records which tasks they were.
    pub fn follow_commits(&mut self, timeout: Duration) -> anyhow::Result<()> {
        for (task, at) in self.job.commits_after(self.commits.cursor, timeout)? {
            self.commits.record(task, at);
        }
        Ok(())
    }

    /// Reads the `done` stream up to its first `done` records (the job's count), so that no commit
    /// goes unrecorded before the result is read or Redis is crashed on purpose.
    pub fn catch_up(&mut self, done: u64) -> anyhow::Result<()> {
        let mut rounds = 0;
        while self.commits.cursor < done && rounds < 1000 {
            self.follow_commits(Duration::from_millis(1))?;
            rounds += 1;
        }
        Ok(())
    }

    /// Tasks whose commit was seen more than once: committed, undone by a rollback, committed again.
    pub fn recomputed_after_rollback(&self) -> u64 {
        self.commits.recomputed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(tasks: u64, state: &str) -> Status {
        Status {
            tasks,
            state: state.into(),
            ..Status::default()
        }
    }

    #[test]
    fn a_rollback_that_lost_tasks_or_the_seal_is_repaired_by_resending() {
        assert_eq!(repair_for(&status(10, "open"), 10, false), Repair::Nothing);
        assert_eq!(repair_for(&status(10, "sealed"), 10, true), Repair::Nothing);
        // A restore from an older checkpoint: fewer tasks than were sent.
        assert_eq!(repair_for(&status(7, "open"), 10, false), Repair::Resend);
        assert_eq!(repair_for(&status(7, "sealed"), 10, true), Repair::Resend);
        // Every task is there but the seal was lost.
        assert_eq!(repair_for(&status(10, "open"), 10, true), Repair::Resend);
        // Tasks the driver has not sent yet are not a loss.
        assert_eq!(repair_for(&status(10, "open"), 4, false), Repair::Nothing);
    }

    #[test]
    fn a_task_committed_again_after_a_rollback_counts_once_as_recomputed() {
        let mut log = CommitLog::default();
        log.record("1-0".into(), 100);
        log.record("2-0".into(), 110);
        assert_eq!((log.cursor, log.recomputed()), (2, 0));
        // Redis restarted: the stream is read again from the start; what survived is recognised.
        log.reread();
        assert_eq!(log.cursor, 0);
        log.record("1-0".into(), 100);
        // Task 2 was rolled back and committed again, later.
        log.record("2-0".into(), 250);
        assert_eq!((log.cursor, log.recomputed()), (2, 1));
        // Re-reading the same records again changes nothing.
        log.reread();
        log.record("1-0".into(), 100);
        log.record("2-0".into(), 250);
        assert_eq!(log.recomputed(), 1);
    }
}
