//! Keeping a job whole while its coordinator crashes. The driver remembers every task it enqueued and
//! whether it sealed, and on every status check repairs what a crash undid: no job at all (Redis
//! restarted without data) -> create it again with the same run id and re-send everything; fewer
//! tasks than enqueued (a restore from an older checkpoint) -> re-send them all (idempotent) and seal
//! again. It follows the `done` stream ([`CommitLog`]) to count tasks committed, rolled back and
//! committed again.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;
use redcount_protocol::{now_ms, Error as ProtocolError, NewTask, Status};

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

impl Session {
    /// Enqueues tasks (remembered, to re-send after a rollback).
    pub fn enqueue(&mut self, tasks: &[NewTask]) -> anyhow::Result<()> {
        for chunk in tasks.chunks(ENQUEUE_CHUNK) {
            match self.job.enqueue(now_ms(), chunk) {
                Ok(_) => {}
                Err(ProtocolError::NoJob { .. }) => self.recreate()?,
                Err(e) => return Err(anyhow::Error::new(e).context("enqueueing tasks")),
            }
        }
        self.tasks.extend_from_slice(tasks);
        Ok(())
    }

    /// Creates the job again (Redis lost it) and re-sends every task, re-sealing if it was sealed.
    fn recreate(&mut self) -> anyhow::Result<()> {
        tracing::warn!("job '{}' is gone from redis (restarted without its data): running it again from the start", self.name);
        self.job.create(now_ms(), &self.run_id, &self.spec)?;
        self.recreated += 1;
        self.commits.reread();
        self.resend()?;
        if self.sealed {
            self.seal()?;
        }
        Ok(())
    }

    /// Seals the job, re-sending every task first if Redis lost some meanwhile.
    pub fn seal(&mut self) -> anyhow::Result<()> {
        self.sealed = true;
        for _ in 0..10 {
            let (sealed, there) = match self.job.seal(now_ms(), self.tasks.len() as u64) {
                Ok(answer) => answer,
                Err(ProtocolError::NoJob { .. }) => {
                    self.recreate()?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if sealed {
                return Ok(());
            }
            if there > self.tasks.len() as u64 {
                bail!("job '{}' holds {there} tasks but {} were enqueued: something else writes to it", self.name, self.tasks.len());
            }
            tracing::warn!(
                "redis holds {there} of {} tasks (a rollback): sending them again",
                self.tasks.len()
            );
            self.resend()?;
        }
        bail!(
            "job '{}' kept losing tasks while being sealed; is Redis crashing in a loop?",
            self.name
        )
    }

    fn resend(&mut self) -> anyhow::Result<()> {
        let tasks = std::mem::take(&mut self.tasks);
        let sent = self.enqueue(&tasks);
        if sent.is_err() {
            self.tasks = tasks;
        }
        sent
    }

    /// The job's status, after repairing what a Redis crash undid: the job re-created when Redis lost
    /// it, tasks re-sent when a rollback lost some, the seal renewed.
    pub fn status(&mut self) -> anyhow::Result<Status> {
        let live_window = redcount_protocol::live_window(self.spec.lease);
        let status = match self.job.status(now_ms(), live_window) {
            Ok(s) => s,
            Err(ProtocolError::NoJob { .. }) => {
                self.recreate()?;
                self.job.status(now_ms(), live_window)?
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
                self.resend()?;
                if self.sealed {
                    self.seal()?;
                }
                Ok(self.job.status(now_ms(), live_window)?)
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
