//! The worker loop: **claim** tasks, **count** them, **commit** them in one atomic call
//! ([`Worker::step`]).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use anyhow::Context;
use redcount_count::{Tokenizer, WordCounts};
use redcount_protocol::{
    live_window, Aggregation, ClaimRequest, Claimed, CommitOutcome, Deferral,
    Error as ProtocolError, Job, JobSpec, Joined, Link, MergePolicy, Now, Piece, Task,
};

use crate::count::{build_tokenizer, PieceBytes};
use crate::lease::{renew_every, Renewer};
use crate::WorkerOptions;
use redcount_input::object::is_object;
use redcount_input::InputError;

/// What one worker did.
#[derive(Debug, Default, Clone)]
pub struct WorkerReport {
    /// This worker's consumer name.
    pub name: String,
    /// Tasks whose counts this worker's commits applied.
    pub tasks_committed: u64,
    /// Commits applied.
    pub commits: u64,
    /// Tasks this worker counted that another worker had committed first.
    pub duplicates: u64,
    /// Inputs this worker gave up as unreadable.
    pub failed: u64,
    /// Partition merges this worker committed.
    pub merges: u64,
}

/// Runs a worker until job `job_name` at `url` is finished.
pub fn run_worker(
    url: &str,
    job_name: &str,
    options: &WorkerOptions,
) -> anyhow::Result<WorkerReport> {
    let name = options.name.clone().unwrap_or_else(unique_worker_name);
    let mut job = Job::new(Link::open(url, options.link.clone())?, job_name)?;
    let spec = wait_for_spec(&mut job, options.wait_for_job)?;
    job.set_sync_replicas(spec.sync_replicas);
    // The worker's own lease if it asked for one, else the job's.
    let lease = options.lease.unwrap_or(spec.lease).get();
    match take_name(&mut job, &name, live_window(lease)) {
        Err(err) if is_stopped(&err) => {
            tracing::info!("{name}: job '{job_name}' {err}");
            return Ok(WorkerReport {
                name,
                ..WorkerReport::default()
            });
        }
        other => other?,
    }
    // An object store's transient errors are retried for up to a lease: the renewals keep the task
    // meanwhile, and a store down longer than that is down (the input is reported failed).
    redcount_input::object::set_retry_budget(lease);
    let renewer_job = Job::new(Link::open(url, options.link.clone())?, job_name)?;
    let mut worker = Worker {
        spare: None,
        tokenizer: build_tokenizer(
            &spec,
            match spec.dictionary {
                Some(_) => job.dictionary_text()?,
                None => None,
            },
        )?,
        max_attempts: options.max_attempts.unwrap_or(spec.max_attempts).max(1),
        renewer: Renewer::start(renewer_job, name.clone(), lease, options.task_timeout),
        csv_column: spec.csv_column,
        binary: spec.binary,
        aggregation: spec.aggregation,
        partitions: spec.partitions.get(),
        merge_policy: MergePolicy {
            min_age: options.merge_after,
            ..MergePolicy::default()
        },
        last_merge_check: Instant::now(),
        lease,
        job,
        options,
        buf: Vec::new(),
        carry: VecDeque::new(),
        read_ahead: None,
        report: WorkerReport {
            name: name.clone(),
            ..WorkerReport::default()
        },
    };
    loop {
        // Ctrl-C or SIGTERM (`redcount worker` by hand): leave the job, so it stops showing this
        // worker as live; the tasks it held go to other workers when their leases end.
        if redcount_protocol::stop_requested() {
            let _ = worker
                .job
                .leave(Now::Coordinator, std::slice::from_ref(&name));
            anyhow::bail!(
                "interrupted: worker {name} left job '{job_name}'; the tasks it held go to other \
                 workers within {:.0} s (their lease)",
                lease.as_secs_f64()
            );
        }
        match worker.step() {
            Ok(true) => return Ok(worker.report),
            Ok(false) => {}
            // Redis came back without the job: the driver creates it again; wait for that. Whatever
            // this worker held is gone with it.
            Err(err) if is_no_job(&err) => {
                tracing::warn!(
                    "{name}: job '{job_name}' vanished from redis; waiting for it again"
                );
                worker.carry.clear();
                worker.renewer.hold(Vec::new());
                wait_for_spec(&mut worker.job, options.wait_for_job)?;
            }
            // The job ended without a result (cancelled, or failed on a lost key): nothing is left
            // for this worker to do, and the driver reports why.
            Err(err) if is_stopped(&err) => {
                tracing::warn!("{name}: {err:#}");
                return Ok(worker.report);
            }
            Err(err) => return Err(err),
        }
    }
}

/// Takes `name` in the job for this process: names hold leases and staged blobs, so two live
/// processes must never share one. A name still held by a process heard from within the live
/// window is waited for until that window has passed (a worker restarted under the same
/// `--name` after its last life died); one that is still heard from then is another live
/// worker, and this one is refused.
fn take_name(job: &mut Job, name: &str, window: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + window + Duration::from_secs(1);
    let mut said = false;
    loop {
        match job.join(Now::Coordinator, name, window)? {
            Joined::Yes => return Ok(()),
            Joined::Taken(ago) if Instant::now() < deadline => {
                if !said {
                    tracing::warn!(
                        "worker name '{name}' was used by another process of job '{}' {:.1} s ago; \
                         waiting up to {:.0} s for it to fall silent",
                        job.name(),
                        ago.as_secs_f64(),
                        window.as_secs_f64()
                    );
                    said = true;
                }
                let left = window.saturating_sub(ago) + Duration::from_millis(50);
                std::thread::sleep(left.min(deadline.saturating_duration_since(Instant::now())));
            }
            Joined::Taken(ago) => anyhow::bail!(
                "another live worker of job '{}' is named '{name}' (heard from {:.1} s ago): \
                 worker names must be unique; pick another --name, or leave it out for a generated one",
                job.name(),
                ago.as_secs_f64()
            ),
        }
    }
}

fn is_stopped(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<ProtocolError>(),
        Some(ProtocolError::Stopped { .. })
    )
}

fn is_no_job(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<ProtocolError>(),
        Some(ProtocolError::NoJob { .. })
    )
}

/// The job's spec, once the job exists.
fn wait_for_spec(job: &mut Job, patience: Duration) -> anyhow::Result<JobSpec> {
    let deadline = Instant::now() + patience;
    let mut said = false;
    loop {
        match job.spec() {
            Err(ProtocolError::NoJob { .. }) if Instant::now() < deadline => {
                if !said {
                    tracing::warn!(
                        "there is no job '{}' at {} yet: waiting up to {:.0} s for a driver to \
                         make it (`redcount jobs` lists the jobs there; check --job and --redis)",
                        job.name(),
                        job.addr(),
                        patience.as_secs_f64()
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return Ok(other?),
        }
    }
}

/// One worker process's state: nothing in it matters across a crash (leases cover what it held).
struct Worker<'a> {
    job: Job,
    options: &'a WorkerOptions,
    renewer: Renewer,
    tokenizer: Tokenizer,
    /// The counts table of the last committed batch, cleared and reused by the next one (its
    /// memory is sized for this job's vocabulary already).
    spare: Option<WordCounts>,
    csv_column: String,
    /// Inputs that look binary: skipped (an error naming them) or counted.
    binary: redcount_protocol::BinaryFiles,
    aggregation: Aggregation,
    partitions: u32,
    merge_policy: MergePolicy,
    /// When due partitions were last looked for while there was counting to do.
    last_merge_check: Instant,
    lease: Duration,
    max_attempts: u32,
    buf: Vec<u8>,
    /// Tasks claimed but not counted when the last batch ran out of time: they start the next one.
    carry: VecDeque<Task>,
    /// The objects of the task next in `carry`, being read while the current task is counted.
    read_ahead: Option<(String, PieceBytes)>,
    report: WorkerReport,
}

impl Worker<'_> {
    /// An empty batch, counting into the spare table when there is one.
    fn new_batch(&mut self) -> Batch {
        let merged = match self.spare.take() {
            Some(mut table) => {
                table.clear();
                table
            }
            None => self.tokenizer.new_counts(),
        };
        Batch {
            merged,
            ..Batch::default()
        }
    }

    /// One round: claim, count, commit. True when the job is finished.
    fn step(&mut self) -> anyhow::Result<bool> {
        // 0. merge the partitions that are due, now and then while counting (so the live result
        // stays within `merge_after` of the commits) and whenever there is nothing to count.
        if self.last_merge_check.elapsed() >= MERGE_CHECK_EVERY {
            self.merge_due()?;
        }
        // 1. claim: expired leases first, then new tasks (library/claim.lua, rc_claim).
        if self.carry.is_empty() {
            let claimed = self.claim(self.options.batch_tasks, self.options.batch_bytes)?;
            if claimed.tasks.is_empty() {
                if claimed.finished {
                    return Ok(true);
                }
                if self.merge_due()? > 0 {
                    return Ok(false);
                }
                // Nothing to do: block until a task or a commit arrives, or the next lease may expire.
                // Merges signal nothing: with partials in play, look again soon. Never longer than
                // a renewal interval, so a job with a live worker never looks unserved.
                let longest = match self.aggregation {
                    Aggregation::Workers => Duration::from_millis(100),
                    Aggregation::Redis => Duration::from_millis(500),
                }
                .min(renew_every(self.lease));
                let wait = claimed
                    .next_expiry
                    .map(|d| d + Duration::from_millis(1))
                    .unwrap_or(longest)
                    .clamp(Duration::from_millis(5), longest);
                self.job
                    .wait_for_change(&claimed.last_task_id, &claimed.last_done_id, wait)?;
                return Ok(false);
            }
            self.carry.extend(claimed.tasks);
        }
        // 2. count. While more work is waiting and the batch is under budget, claim and count more:
        // Redis pays per distinct word of every commit, so fewer, larger commits cost it far less.
        let started = Instant::now();
        let mut batch = self.new_batch();
        // A task handed out alone (its last holder died holding it) is counted and committed before
        // anything else is taken: if it kills this worker too, it alone is charged for that.
        let mut isolated = false;
        loop {
            self.renewer.hold(
                self.carry
                    .iter()
                    .map(|t| t.id.clone())
                    .chain(batch.ids())
                    .collect(),
            );
            while let Some(task) = self.carry.pop_front() {
                // Its last holder fell silent counting it alone: split it (its parts are handed
                // out alone in turn) rather than count it all and maybe die with it.
                if let Some(cut) = crate::narrow::cut_for(&task) {
                    self.split(&task, cut)?;
                    isolated = true;
                    break;
                }
                isolated |= task.solo;
                if self.carry.is_empty() && !task.solo && task.pieces().any(|p| is_object(&p.path))
                {
                    self.claim_ahead(&batch, &task)?;
                }
                self.count_into(&mut batch, task)?;
                if started.elapsed() >= self.options.batch_time || isolated {
                    break;
                }
            }
            let tasks_left = self
                .options
                .batch_tasks
                .saturating_sub(batch.tasks.len() as u64);
            let bytes_left = self.options.batch_bytes.saturating_sub(batch.bytes);
            if !self.carry.is_empty()
                || isolated
                || started.elapsed() >= self.options.batch_time
                || tasks_left == 0
                || bytes_left == 0
            {
                break;
            }
            let more = self.claim(tasks_left, bytes_left)?.tasks;
            if more.is_empty() {
                break;
            }
            // A task whose lease ran out while this worker held it (after Redis restored an old
            // checkpoint, say) can come back to this same worker: keep one copy.
            let held: HashSet<String> = self
                .carry
                .iter()
                .chain(&batch.tasks)
                .map(|t| t.id.clone())
                .collect();
            self.carry
                .extend(more.into_iter().filter(|t| !held.contains(&t.id)));
        }
        // 3. commit, in one atomic call; with nothing carried over (and nothing that must be
        // committed alone), the next batch's claim rides in the same round trip.
        let claim_next = self.carry.is_empty() && !isolated;
        self.commit(batch, claim_next)?;
        self.renewer
            .hold(self.carry.iter().map(|t| t.id.clone()).collect());
        Ok(false)
    }

    /// Claims one more task while `current` (the last one claimed) is about to be counted, so that
    /// its objects are read while `current` is counted (`count_into`'s read-ahead): a batch of
    /// large objects is one task, and without this each one's reads began only once the one before
    /// was committed. The task waits in `carry`, leased and renewed, for the next batch.
    fn claim_ahead(&mut self, batch: &Batch, current: &Task) -> anyhow::Result<()> {
        let held: HashSet<String> = batch
            .ids()
            .chain(std::iter::once(current.id.clone()))
            .collect();
        let more = self.claim(1, 1)?.tasks;
        self.carry
            .extend(more.into_iter().filter(|t| !held.contains(&t.id)));
        self.renewer.hold(
            held.into_iter()
                .chain(self.carry.iter().map(|t| t.id.clone()))
                .collect(),
        );
        Ok(())
    }

    /// Splits `task` at `cut` (see [`crate::narrow`]); its parts wait for the next claims.
    fn split(&mut self, task: &Task, cut: u64) -> anyhow::Result<()> {
        let me = self.report.name.clone();
        match self.job.split(Now::Coordinator, &me, &task.id, cut)? {
            Some((a, b)) => tracing::warn!(
                "{me}: task {} ({}) was being counted alone when its worker fell silent: split \
                 into {a} and {b} to find the input that stops workers",
                task.id,
                task.path.display()
            ),
            None => tracing::info!(
                "{me}: task {} was no longer this worker's to split",
                task.id
            ),
        }
        Ok(())
    }

    fn claim(&mut self, max_tasks: u64, max_bytes: u64) -> anyhow::Result<Claimed> {
        let request = claim_request(
            &self.report.name,
            self.options,
            self.lease,
            self.max_attempts,
            (max_tasks, max_bytes),
        );
        self.job
            .claim(Now::Coordinator, &request)
            .context("claiming tasks")
    }

    /// Counts `task` into the batch; an input that cannot be read goes to the dead stream instead
    /// (for a task that packs small files, only that file: the others are counted and committed).
    fn count_into(&mut self, batch: &mut Batch, task: Task) -> anyhow::Result<()> {
        batch.bytes += task.len();
        let me = self.report.name.clone();
        let packed = !task.more.is_empty();
        // An input this host cannot open may be on another worker's host (workers need the inputs
        // at the same paths, and a mount can be missing on one): offer the task to the others
        // first. One stat per file, before anything is counted, so a deferred task leaves no trace.
        // (Objects are in one store that every worker reaches alike.)
        let mut nobody_can = None;
        if let Some(err) = task.pieces().filter(|p| !is_object(&p.path)).find_map(|p| {
            std::fs::metadata(&p.path)
                .err()
                .map(|e| InputError::from_io(&p.path, e))
        }) {
            match self
                .job
                .defer(Now::Coordinator, &me, &task.id, live_window(self.lease))?
            {
                Deferral::Deferred => {
                    tracing::warn!("{me}: {err}: task {} left to another worker", task.id);
                    return Ok(());
                }
                Deferral::NotHeld => return Ok(()),
                Deferral::NobodyCan(n) => nobody_can = Some(n),
            }
        }
        let reason = |err: &InputError| match nobody_can {
            Some(n) if n > 1 => format!("{err} (on each of the {n} live workers)"),
            _ => err.to_string(),
        };
        let mut words = 0;
        self.renewer.counting(Some(&task.id));
        let _counted = CountingGuard(&self.renewer);
        let pieces: Vec<Piece> = task.pieces().collect();
        let mut bytes = match self.read_ahead.take() {
            Some((id, bytes)) if id == task.id => bytes,
            _ => PieceBytes::start(&pieces),
        };
        // The next task's objects are read while this one is counted.
        if let Some(next) = self.carry.front() {
            if next.pieces().any(|p| is_object(&p.path)) {
                let next_pieces: Vec<Piece> = next.pieces().collect();
                self.read_ahead = Some((next.id.clone(), PieceBytes::start(&next_pieces)));
            }
        }
        for (index, piece) in pieces.iter().enumerate() {
            // Per input file, so a slowed job takes as long whether or not small files are packed.
            burn_cpu(self.options.slow);
            crate::poison::strike(&piece.path, piece.start, piece.end);
            match bytes.count(
                index,
                piece,
                &self.tokenizer,
                &self.csv_column,
                self.binary,
                &mut self.buf,
                &mut batch.merged,
            ) {
                Ok(n) => words += n,
                Err(err) if packed => {
                    tracing::warn!(
                        "{me}: {} (in task {}) failed: {err}",
                        piece.path.display(),
                        task.id
                    );
                    if self.job.fail_piece(
                        Now::Coordinator,
                        &me,
                        &task.id,
                        index,
                        &piece.path,
                        &reason(&err),
                    )? {
                        self.report.failed += 1;
                    }
                }
                Err(err) => {
                    tracing::warn!("{me}: task {} failed: {err}", task.id);
                    if self
                        .job
                        .fail(Now::Coordinator, &me, &task.id, &reason(&err))?
                    {
                        self.report.failed += 1;
                    }
                    return Ok(());
                }
            }
        }
        batch.counted.push((task.id.clone(), words));
        batch.tasks.push(task);
        Ok(())
    }

    /// Commits the batch. When some of its tasks were committed elsewhere meanwhile (a lease expired and
    /// another worker finished first), nothing was applied: recount the others and commit them alone.
    /// With `claim_next`, the next batch is claimed in the same round trip as the first commit (its
    /// tasks wait in `carry`).
    fn commit(&mut self, mut batch: Batch, mut claim_next: bool) -> anyhow::Result<()> {
        let me = self.report.name.clone();
        while !batch.counted.is_empty() {
            let outcome = match self.aggregation {
                Aggregation::Redis => {
                    self.job
                        .commit(Now::Coordinator, &me, &batch.counted, batch.merged.iter())?
                }
                Aggregation::Workers => {
                    let blobs = batch.merged.partition_blobs(self.partitions);
                    if std::mem::take(&mut claim_next) {
                        let request = claim_request(
                            &self.report.name,
                            self.options,
                            self.lease,
                            self.max_attempts,
                            (self.options.batch_tasks, self.options.batch_bytes),
                        );
                        let (outcome, claimed) = self.job.commit_parts_and_claim(
                            Now::Coordinator,
                            &me,
                            &batch.counted,
                            &blobs,
                            &request,
                        )?;
                        if let Some(claimed) = claimed {
                            self.carry.extend(claimed.tasks);
                        }
                        outcome
                    } else {
                        self.job
                            .commit_parts(Now::Coordinator, &me, &batch.counted, &blobs)?
                    }
                }
            };
            match outcome {
                CommitOutcome::Applied => {
                    self.report.commits += 1;
                    self.report.tasks_committed += batch.counted.len() as u64;
                    self.spare = Some(batch.merged);
                    return Ok(());
                }
                CommitOutcome::Duplicate => {
                    tracing::info!(
                        "{me}: {} task(s) had already been committed by another worker",
                        batch.counted.len()
                    );
                    self.report.duplicates += batch.counted.len() as u64;
                    self.spare = Some(batch.merged);
                    return Ok(());
                }
                CommitOutcome::Partial(gone) => {
                    self.report.duplicates += gone.len() as u64;
                    let mut rest = self.new_batch();
                    for task in std::mem::take(&mut batch.tasks)
                        .into_iter()
                        .filter(|t| !gone.contains(&t.id))
                    {
                        self.count_into(&mut rest, task)?;
                    }
                    batch = rest;
                }
            }
        }
        Ok(())
    }
}

impl Worker<'_> {
    /// Merges every partition that is due (library/partials.lua, rc_merge_claim / rc_merge_commit): the
    /// partition's result and its claimed partials become one blob, committed in place of exactly
    /// those. [`MERGE_BATCH`] partitions at a time, in three round trips a batch. Returns how many
    /// merges were committed.
    fn merge_due(&mut self) -> anyhow::Result<u64> {
        self.last_merge_check = Instant::now();
        if self.aggregation != Aggregation::Workers {
            return Ok(0);
        }
        let mut merged = 0;
        // At most one round over the partitions, so counting is not starved.
        let mut left = self.partitions;
        while left > 0 {
            let me = self.report.name.clone();
            let batch = left.min(MERGE_BATCH);
            let (committed, stale) = crate::merge::merge_due(
                &mut self.job,
                Now::Coordinator,
                &me,
                self.lease,
                &self.merge_policy,
                batch,
            )
            .context("merging due partitions")?;
            if stale > 0 {
                tracing::info!("{me}: {stale} merge(s) were stale");
            }
            merged += committed;
            self.report.merges += committed;
            if committed + stale < u64::from(batch) {
                break;
            }
            left -= batch;
        }
        Ok(merged)
    }
}

/// Partitions merged in one batch: its claims, reads and commits each go in one pipeline, so a
/// worker far from Redis waits three round trips for up to this many merges instead of three each;
/// bounded, so a batch holds at most this many partitions' results in memory.
const MERGE_BATCH: u32 = 8;

/// What a worker asks of `claim`: at most `(tasks, bytes)` of new work.
fn claim_request<'a>(
    worker: &'a str,
    options: &WorkerOptions,
    lease: Duration,
    max_attempts: u32,
    (max_tasks, max_bytes): (u64, u64),
) -> ClaimRequest<'a> {
    ClaimRequest {
        worker,
        lease,
        max_tasks,
        max_bytes,
        max_attempts,
        live_window: live_window(lease),
        speculate_factor: options.speculate_factor,
        speculate_min: options.speculate_min,
    }
}

/// Clears the watchdog's "counting" when a task is done, however it ends.
struct CountingGuard<'a>(&'a Renewer);

impl Drop for CountingGuard<'_> {
    fn drop(&mut self) {
        self.0.counting(None);
    }
}

/// How often a busy worker looks for partitions due for a merge.
const MERGE_CHECK_EVERY: Duration = Duration::from_millis(250);

/// Tasks counted since the last commit, with their merged counts.
#[derive(Default)]
struct Batch {
    merged: WordCounts,
    /// (task id, words) of the tasks counted successfully.
    counted: Vec<(String, u64)>,
    tasks: Vec<Task>,
    bytes: u64,
}

impl Batch {
    fn ids(&self) -> impl Iterator<Item = String> + '_ {
        self.tasks.iter().map(|t| t.id.clone())
    }
}

/// Spins until this thread has used `time` of CPU (see [`WorkerOptions::slow`]).
fn burn_cpu(time: Duration) {
    use nix::time::{clock_gettime, ClockId};
    if time.is_zero() {
        return;
    }
    let cpu = || {
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map(Duration::from)
            .unwrap_or_default()
    };
    let until = cpu() + time;
    while cpu() < until {
        std::hint::spin_loop();
    }
}

/// A consumer name no other worker has: host, pid, random suffix.
pub fn unique_worker_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let mut suffix = [0u8; 3];
    // Without OS randomness the pid alone still tells workers on one host apart.
    let _ = getrandom::fill(&mut suffix);
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}-{}-{suffix}", std::process::id())
}
