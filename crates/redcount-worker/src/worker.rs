//! The worker loop: **claim** tasks, **count** them, **commit** them in one atomic call.

use std::time::{Duration, Instant};

use anyhow::Context;
use redcount_count::{Tokenizer, WordCounts};
use redcount_protocol::{
    now_ms, ClaimRequest, CommitOutcome, Error as ProtocolError, Job, JobSpec, Link, LinkOptions,
    Task,
};

use crate::count::{build_tokenizer, count_task};
use crate::lease::Renewer;

/// How a worker behaves; the job's spec supplies what is left as None.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique consumer name (host-pid-random).
    pub name: String,
    /// Lease per task; the job's default when None.
    pub lease_ms: Option<u64>,
    /// Deliveries before a task is given up; the job's default when None.
    pub max_attempts: Option<u32>,
    /// Most bytes claimed at once: small tasks are batched into one commit up to this size.
    pub batch_bytes: u64,
    /// Most tasks claimed at once.
    pub batch_tasks: u64,
    /// Extra CPU time spent on every task (demonstrations and fault tests: a heavier computation, which a
    /// SIGSTOP/SIGCONT straggler really slows down, unlike a sleep).
    pub slow: Duration,
    /// How patient the worker is with an unreachable Redis.
    pub link: LinkOptions,
    /// How long to wait for a job that does not exist yet (workers may start before the driver).
    pub wait_for_job: Duration,
    /// When idle, re-run a task that has run this many times longer than the recent p90 (0: never).
    pub speculate_factor: f64,
    /// ... and for at least this long (ms).
    pub speculate_min_ms: u64,
}

impl WorkerOptions {
    /// Defaults for a worker called `name`.
    pub fn new(name: String) -> WorkerOptions {
        WorkerOptions {
            name,
            lease_ms: None,
            max_attempts: None,
            batch_bytes: 16 << 20,
            batch_tasks: 1024,
            slow: Duration::ZERO,
            link: LinkOptions::default(),
            wait_for_job: Duration::from_secs(60),
            speculate_factor: 3.0,
            speculate_min_ms: 500,
        }
    }
}

/// What one worker did.
#[derive(Debug, Default, Clone)]
pub struct WorkerReport {
    pub tasks_committed: u64,
    pub commits: u64,
    pub duplicates: u64,
    pub failed: u64,
}

/// Runs the worker until job `job` at `url` is finished.
pub fn run_worker(
    url: &str,
    job_name: &str,
    options: &WorkerOptions,
) -> anyhow::Result<WorkerReport> {
    let mut job = Job::new(Link::open(url, options.link.clone())?, job_name)?;
    let spec = wait_for_spec(&mut job, options.wait_for_job)?;
    let tokenizer = build_tokenizer(&spec)?;
    let lease_ms = options.lease_ms.unwrap_or(spec.lease_ms).max(1);
    let max_attempts = options.max_attempts.unwrap_or(spec.max_attempts).max(1);
    let renewer_job = Job::new(Link::open(url, options.link.clone())?, job_name)?;
    let renewer = Renewer::start(renewer_job, options.name.clone(), lease_ms);
    let me = &options.name;
    let mut report = WorkerReport::default();
    let mut buf = Vec::new();
    let claim = |job: &mut Job, max_tasks: u64, max_bytes: u64| {
        let request = ClaimRequest {
            worker: me,
            lease_ms,
            max_tasks,
            max_bytes,
            max_attempts,
            live_window_ms: 3 * lease_ms,
            speculate_factor: options.speculate_factor,
            speculate_min_ms: options.speculate_min_ms,
        };
        job.claim(now_ms(), &request).context("claiming tasks")
    };
    loop {
        // 1. claim: expired leases first, then new tasks (library.lua, rc_claim).
        let claimed = claim(&mut job, options.batch_tasks, options.batch_bytes)?;
        if claimed.tasks.is_empty() {
            if claimed.finished {
                return Ok(report);
            }
            // Nothing to do: block until a task or a commit arrives, or the next lease may expire.
            let until_deadline = claimed
                .next_deadline_ms
                .map(|d| d.saturating_sub(now_ms()) + 1)
                .unwrap_or(500);
            let wait = Duration::from_millis(until_deadline.clamp(5, 500));
            job.wait_for_change(&claimed.last_task_id, &claimed.last_done_id, wait)?;
            continue;
        }
        // 2. count. While more work is waiting and the batch is under budget, claim and count more:
        // Redis pays per distinct word of every commit, so fewer, larger commits cost it far less.
        let mut batch = Batch {
            slow: options.slow,
            ..Batch::default()
        };
        let mut next = claimed.tasks;
        while !next.is_empty() {
            batch.held.extend(next.iter().map(|t| t.id.clone()));
            renewer.hold(batch.held.clone());
            for task in next {
                batch.count(
                    &mut job,
                    me,
                    task,
                    &tokenizer,
                    &spec.csv_column,
                    &mut buf,
                    &mut report,
                )?;
            }
            let (tasks_left, bytes_left) = batch.budget_left(options);
            if tasks_left == 0 || bytes_left == 0 {
                break;
            }
            next = claim(&mut job, tasks_left, bytes_left)?.tasks;
        }
        // 3. commit, in one atomic call.
        commit(
            &mut job,
            options,
            &tokenizer,
            &spec.csv_column,
            batch,
            &mut buf,
            &mut report,
        )?;
        renewer.hold(Vec::new());
    }
}

/// The job's spec, once the job exists.
fn wait_for_spec(job: &mut Job, patience: Duration) -> anyhow::Result<JobSpec> {
    let deadline = Instant::now() + patience;
    let mut said = false;
    loop {
        match job.spec() {
            Err(ProtocolError::NoJob { .. }) if Instant::now() < deadline => {
                if !said {
                    tracing::info!(
                        "waiting for job '{}' to appear at {}",
                        job.name(),
                        job.addr()
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return Ok(other?),
        }
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

/// Tasks counted since the last commit, with their merged counts.
#[derive(Default)]
struct Batch {
    /// Extra CPU time per task.
    slow: Duration,
    merged: WordCounts,
    /// (task id, words) of the tasks counted successfully.
    counted: Vec<(String, u64)>,
    tasks: Vec<Task>,
    /// Every id whose lease this worker holds (counted or failed).
    held: Vec<String>,
    bytes: u64,
}

impl Batch {
    /// Counts `task` into the batch; an input that cannot be read goes to the dead stream instead.
    #[allow(clippy::too_many_arguments)]
    fn count(
        &mut self,
        job: &mut Job,
        me: &str,
        task: Task,
        tokenizer: &Tokenizer,
        csv_column: &str,
        buf: &mut Vec<u8>,
        report: &mut WorkerReport,
    ) -> anyhow::Result<()> {
        self.bytes += task.len();
        burn_cpu(self.slow);
        match count_task(&task, tokenizer, csv_column, buf, &mut self.merged) {
            Ok(words) => {
                self.counted.push((task.id.clone(), words));
                self.tasks.push(task);
            }
            Err(err) => {
                tracing::warn!("{me}: task {} failed: {err}", task.id);
                if job.fail(now_ms(), me, &task.id, &err.to_string())? {
                    report.failed += 1;
                }
            }
        }
        Ok(())
    }

    fn budget_left(&self, options: &WorkerOptions) -> (u64, u64) {
        (
            options.batch_tasks.saturating_sub(self.held.len() as u64),
            options.batch_bytes.saturating_sub(self.bytes),
        )
    }
}

/// Commits the batch. When some of its tasks were committed elsewhere meanwhile (a lease expired and
/// another worker finished first), nothing was applied: recount the others and commit them alone.
fn commit(
    job: &mut Job,
    options: &WorkerOptions,
    tokenizer: &Tokenizer,
    csv_column: &str,
    mut batch: Batch,
    buf: &mut Vec<u8>,
    report: &mut WorkerReport,
) -> anyhow::Result<()> {
    let me = &options.name;
    loop {
        if batch.counted.is_empty() {
            return Ok(());
        }
        match job.commit(now_ms(), me, &batch.counted, batch.merged.iter())? {
            CommitOutcome::Applied => {
                report.commits += 1;
                report.tasks_committed += batch.counted.len() as u64;
                return Ok(());
            }
            CommitOutcome::Duplicate => {
                tracing::info!(
                    "{me}: {} task(s) had already been committed by another worker",
                    batch.counted.len()
                );
                report.duplicates += batch.counted.len() as u64;
                return Ok(());
            }
            CommitOutcome::Partial(gone) => {
                report.duplicates += gone.len() as u64;
                let mut rest = Batch {
                    slow: batch.slow,
                    ..Batch::default()
                };
                for task in std::mem::take(&mut batch.tasks)
                    .into_iter()
                    .filter(|t| !gone.contains(&t.id))
                {
                    rest.count(job, me, task, tokenizer, csv_column, buf, report)?;
                }
                batch = rest;
            }
        }
    }
}
