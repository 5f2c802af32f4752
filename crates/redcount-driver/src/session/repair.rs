//! Keeping a job whole while its coordinator crashes. The driver remembers every task it enqueued and
//! whether it sealed, and on every status check repairs what a crash undid: no job at all (Redis
//! restarted without data) -> create it again with the same run id and re-send everything; fewer
//! tasks than enqueued (a restore from an older checkpoint) -> re-send from where the job's run of
//! tasks ends, and seal again. It follows the `done` stream ([`CommitLog`]) to count tasks committed, rolled back and
//! committed again.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::bail;
use redcount_latency::LatencyRow;
use redcount_protocol::{
    id_number, DoneRecord, Enqueued, Error as ProtocolError, NewTask, Now, PlanFacts, Status,
};

use super::enqueued::{EnqueuedTasks, Schedule};
use super::Session;

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
    // A job stopped on purpose (`jobs cancel`) or failed is over: nothing of it is repaired.
    if status.stopped().is_some() {
        Repair::Nothing
    } else if status.tasks < enqueued as u64 || (sealed && status.state != "sealed") {
        Repair::Resend
    } else {
        Repair::Nothing
    }
}

/// What the `done` stream has said so far, for the newest `keep` tasks (0: all): each task's latest
/// commit record and whether it was committed more than once (committed, undone by a rollback or a
/// lost Redis, committed again), and the number of the last record read. A task that leaves the
/// window hands its record to the session's latency spill: its commit is older than the job's
/// history, so no rollback the driver repairs can undo it any more.
#[derive(Debug, Default)]
pub(super) struct CommitLog {
    /// The window, oldest first; `slots[i]` is slot `first_slot + i`.
    slots: VecDeque<Seen>,
    first_slot: u64,
    /// Task seq -> its slot. A map of two integers, sized once: a full window churns one entry per
    /// commit, and a map of whole records grew by doubling under that churn (measured: +23 MB).
    slot_of: HashMap<u64, u64>,
    keep: usize,
    recomputed_forgotten: u64,
    cursor: u64,
}

#[derive(Debug)]
struct Seen {
    record: DoneRecord,
    recomputed: bool,
}

impl CommitLog {
    /// A log of the newest `keep` tasks' commits (0: every task's).
    pub(super) fn new(keep: u64) -> CommitLog {
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        // Sized once (0 keeps every task: then they grow as needed). The ring holds one more than
        // the window, since a record is pushed before the oldest leaves: a ring that outgrew its
        // capacity once wanders over twice the memory. The map is twice the window: under
        // remove/insert churn a table below half full rehashes in place instead of growing.
        let window = if keep == 0 { 0 } else { keep.min(1 << 22) };
        CommitLog {
            slots: VecDeque::with_capacity(window + usize::from(window > 0)),
            slot_of: HashMap::with_capacity(2 * window),
            keep,
            ..CommitLog::default()
        }
    }

    /// Records record `n` of the `done` stream; returns the record of a task that left the window.
    fn record(&mut self, n: u64, record: DoneRecord) -> Option<DoneRecord> {
        self.cursor = n;
        let seq = id_number(&record.task, 0);
        if let Some(&slot) = self.slot_of.get(&seq) {
            let seen = &mut self.slots[(slot - self.first_slot) as usize];
            if seen.record.committed_ms != record.committed_ms {
                seen.recomputed = true;
                seen.record = record;
            }
            return None;
        }
        self.slot_of
            .insert(seq, self.first_slot + self.slots.len() as u64);
        self.slots.push_back(Seen {
            record,
            recomputed: false,
        });
        if self.keep == 0 || self.slots.len() <= self.keep {
            return None;
        }
        let gone = self.slots.pop_front()?;
        self.first_slot += 1;
        self.slot_of.remove(&id_number(&gone.record.task, 0));
        self.recomputed_forgotten += u64::from(gone.recomputed);
        Some(gone.record)
    }

    /// The stream may have been rolled back and rewritten: read it again from the start (records
    /// already seen are recognised by their commit time).
    fn reread(&mut self) {
        self.cursor = 0;
    }

    /// Tasks whose commit was seen more than once.
    fn recomputed(&self) -> u64 {
        self.recomputed_forgotten + self.slots.iter().filter(|s| s.recomputed).count() as u64
    }

    /// The latest commit record of every task in the window, oldest task first.
    fn records(&self) -> Vec<DoneRecord> {
        self.slots.iter().map(|s| s.record.clone()).collect()
    }
}

/// Most rounds of re-sending after the job lost tasks or vanished, within one enqueue or seal.
const SEND_ROUNDS: usize = 20;

impl Session {
    /// Enqueues the next tasks of a batch job's plan (seqs continuing those before), as the
    /// planner makes them: written to the spill first, so they can be sent again after a
    /// rollback. The job's tasks are always an unbroken run 1..n: when Redis lost some meanwhile
    /// (it answers with where its run ends), those are sent again first, so no chunk ever lands
    /// above a hole. While a resumed job's plan is being checked, tasks are only spilled.
    pub fn enqueue(&mut self, tasks: &[NewTask]) -> anyhow::Result<()> {
        let from = self.tasks.len();
        match &mut self.tasks {
            EnqueuedTasks::Spilled(spill) => spill.push(tasks)?,
            EnqueuedTasks::Schedule { .. } => bail!("a stream's tasks come from its schedule"),
        }
        if self.resume_plan.is_some() {
            return Ok(());
        }
        self.send_from(from)
    }

    /// Ends a batch job's plan: a resumed job's is checked against the plan the job was made
    /// with (same digest, or nothing of it is sent), then every task is sent (those already there
    /// are skipped), and the job is sealed with the plan's facts.
    pub fn finish_plan(&mut self, facts: PlanFacts) -> anyhow::Result<()> {
        if let Some(job_plan) = self.resume_plan.take() {
            super::open::same_plan(&self.name, self.job.addr(), &job_plan, &facts)?;
            self.send_from(0)?;
        }
        self.plan = Some(facts);
        self.seal()
    }

    /// Enqueues a stream's tasks from its schedule: from now on the driver remembers the schedule,
    /// not the tasks, so its memory stays flat however long the stream runs.
    pub fn follow_schedule(&mut self, schedule: Schedule) {
        self.tasks = EnqueuedTasks::Schedule { schedule, count: 0 };
    }

    /// Enqueues the schedule's tasks up to the first `count`.
    pub fn enqueue_scheduled(&mut self, count: u64) -> anyhow::Result<()> {
        let from = self.tasks.len();
        match &mut self.tasks {
            EnqueuedTasks::Schedule { count: sent, .. } => *sent = count.max(*sent),
            EnqueuedTasks::Spilled(_) => bail!("follow_schedule first"),
        }
        self.send_from(from)
    }

    /// Sends the remembered tasks from index `next` on, in chunks, going back to wherever the job's
    /// run of tasks really ends whenever Redis says it lost some (or the whole job).
    fn send_from(&mut self, mut next: usize) -> anyhow::Result<()> {
        let mut rounds = 0;
        while next < self.tasks.len() {
            let end = (next + ENQUEUE_CHUNK).min(self.tasks.len());
            let chunk = self.tasks.range(next, end)?;
            let back_to = match self.job.enqueue(Now::Coordinator, &chunk) {
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
        let first = self.tasks.first_seq();
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
        self.job.create_with_dictionary(
            Now::Coordinator,
            &self.run_id,
            &self.spec,
            self.dictionary.as_deref(),
            None,
        )?;
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
            let expected = self.tasks.len() as u64;
            let (sealed, there) =
                match self
                    .job
                    .seal_with_plan(Now::Coordinator, expected, self.plan.as_ref())
                {
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
        let live_window = redcount_protocol::live_window(self.spec.lease.get());
        // The job's state and the server's run id in one round trip: a driver far from Redis polls.
        let (status, server) = match self.job.status_and_server(Now::Coordinator, live_window) {
            Ok(both) => both,
            Err(ProtocolError::NoJob { .. }) => {
                self.recreate()?;
                self.job.status_and_server(Now::Coordinator, live_window)?
            }
            Err(e) => return Err(e.into()),
        };
        // Checked when the job started; a server set to evict since then could drop any key of
        // the job at any moment, so the job stops here, before a short result can be read.
        if let Some(problem) = server.eviction_problem(self.job.addr()) {
            if !status.finished {
                let reason = format!("its maxmemory-policy changed mid-job: {problem}");
                return Err(self.job.fail_job(Now::Coordinator, &reason).into());
            }
        }
        let run = server.run_id;
        if status.run_id != self.run_id {
            bail!(
                "job '{}' at {} now belongs to another run ({}); stopping",
                self.name,
                self.job.addr(),
                status.run_id
            );
        }
        if run != self.server_run {
            if !self.server_run.is_empty() {
                tracing::warn!(
                    "the coordinator changed (a Redis restart, a failover or a new Raft leader); \
                     re-reading the job's commits ({} now)",
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

    /// Waits up to `timeout` for commits or the job's end, and records which tasks they were.
    /// True when the job has ended (finished, cancelled or failed): waiting longer is pointless.
    pub fn follow_commits(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let (records, ended) = self.job.commits_after(self.commits.cursor, timeout)?;
        for (n, record) in records {
            let skipped = n.saturating_sub(self.commits.cursor + 1);
            if self.commits.cursor > 0 && skipped > 0 {
                tracing::warn!(
                    "{skipped} commit records of job '{}' left Redis's history before the driver \
                     read them: their files are missing from the latency rows (raise --history)",
                    self.name
                );
            }
            if let Some(old) = self.commits.record(n, record) {
                self.spill.push(&LatencyRow::from(&old))?;
            }
        }
        Ok(ended)
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

    /// The latest commit record of each of the newest tasks (the job's history), oldest first; older
    /// ones went to [`Session::spill`].
    pub fn recent_commits(&self) -> Vec<DoneRecord> {
        self.commits.records()
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
        // A cancelled job is over, not a seal to renew.
        assert_eq!(
            repair_for(&status(10, "cancelled"), 10, true),
            Repair::Nothing
        );
    }

    fn done(task: &str, committed_ms: u64) -> DoneRecord {
        DoneRecord {
            task: task.into(),
            path: String::new(),
            start: 0,
            end: 0,
            injected_ms: 0,
            due_ms: 0,
            claimed_ms: 0,
            committed_ms,
            worker: String::new(),
            attempts: 1,
            words: 0,
            bytes: 0,
        }
    }

    #[test]
    fn a_task_committed_again_after_a_rollback_counts_once_as_recomputed() {
        let mut log = CommitLog::new(0);
        log.record(1, done("1-0", 100));
        log.record(2, done("2-0", 110));
        assert_eq!((log.cursor, log.recomputed()), (2, 0));
        // Redis restarted: the stream is read again from the start; what survived is recognised.
        log.reread();
        assert_eq!(log.cursor, 0);
        log.record(1, done("1-0", 100));
        // Task 2 was rolled back and committed again, later: its latest record is the one kept.
        log.record(2, done("2-0", 250));
        assert_eq!((log.cursor, log.recomputed()), (2, 1));
        // Re-reading the same records again changes nothing.
        log.reread();
        log.record(1, done("1-0", 100));
        log.record(2, done("2-0", 250));
        assert_eq!(log.recomputed(), 1);
        let times: Vec<u64> = log.records().iter().map(|r| r.committed_ms).collect();
        assert_eq!(times, [100, 250]);
    }

    #[test]
    fn the_log_holds_the_newest_tasks_and_hands_older_ones_on() {
        let mut log = CommitLog::new(2);
        assert!(log.record(1, done("1-0", 10)).is_none());
        log.record(2, done("1-0", 20)); // recomputed, still in the window
        assert!(log.record(3, done("2-0", 30)).is_none());
        let gone = log
            .record(4, done("3-0", 40))
            .expect("task 1 leaves the window");
        assert_eq!((gone.task.as_str(), gone.committed_ms), ("1-0", 20));
        assert_eq!(
            log.recomputed(),
            1,
            "a forgotten task's recount still counts"
        );
        let tasks: Vec<String> = log.records().into_iter().map(|r| r.task).collect();
        assert_eq!(tasks, ["2-0", "3-0"]);
        assert_eq!(log.cursor, 4);
    }
}
