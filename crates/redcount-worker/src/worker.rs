//! The worker loop: **claim** tasks, **count** them, **commit** them in one atomic call.

use std::time::Duration;

use anyhow::Context;
use redcount_count::{Tokenizer, WordCounts};
use redcount_protocol::{now_ms, CommitOutcome, Job, Link, LinkOptions, Task};

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
    /// Extra time spent on every task before committing (for demonstrations and fault tests).
    pub slow: Duration,
    /// How patient the worker is with an unreachable Redis.
    pub link: LinkOptions,
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
    let spec = job.spec()?;
    let tokenizer = build_tokenizer(&spec)?;
    let lease_ms = options.lease_ms.unwrap_or(spec.lease_ms).max(1);
    let max_attempts = options.max_attempts.unwrap_or(spec.max_attempts).max(1);
    let renewer_job = Job::new(Link::open(url, options.link.clone())?, job_name)?;
    let renewer = Renewer::start(renewer_job, options.name.clone(), lease_ms);
    let me = &options.name;
    let mut report = WorkerReport::default();
    let mut buf = Vec::new();
    loop {
        // 1. claim: expired leases first, then new tasks (library.lua, rc_claim).
        let claimed = job
            .claim(
                now_ms(),
                me,
                lease_ms,
                options.batch_tasks,
                options.batch_bytes,
                max_attempts,
                3 * lease_ms,
            )
            .context("claiming tasks")?;
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
        renewer.hold(claimed.tasks.iter().map(|t| t.id.clone()).collect());
        // 2. count, 3. commit.
        process(
            &mut job,
            options,
            &tokenizer,
            &spec.csv_column,
            claimed.tasks,
            &mut buf,
            &mut report,
        )?;
        renewer.hold(Vec::new());
    }
}

/// Counts a batch of tasks and commits them in one call; inputs that cannot be read go to `dead`.
fn process(
    job: &mut Job,
    options: &WorkerOptions,
    tokenizer: &Tokenizer,
    csv_column: &str,
    mut tasks: Vec<Task>,
    buf: &mut Vec<u8>,
    report: &mut WorkerReport,
) -> anyhow::Result<()> {
    let me = &options.name;
    loop {
        let mut merged = WordCounts::new();
        let mut counted = Vec::with_capacity(tasks.len());
        for task in &tasks {
            match count_task(task, tokenizer, csv_column, buf) {
                Ok(counts) => {
                    counted.push((task.id.clone(), counts.total()));
                    if merged.is_empty() {
                        merged = counts;
                    } else {
                        merged.merge(counts);
                    }
                }
                Err(err) => {
                    tracing::warn!("{me}: task {} failed: {err}", task.id);
                    if job.fail(now_ms(), me, &task.id, &err.to_string())? {
                        report.failed += 1;
                    }
                }
            }
        }
        if counted.is_empty() {
            return Ok(());
        }
        if !options.slow.is_zero() {
            std::thread::sleep(options.slow * counted.len() as u32);
        }
        match job.commit(now_ms(), me, &counted, merged.iter())? {
            CommitOutcome::Applied => {
                report.commits += 1;
                report.tasks_committed += counted.len() as u64;
                return Ok(());
            }
            CommitOutcome::Duplicate => {
                tracing::info!(
                    "{me}: {} task(s) had already been committed by another worker",
                    counted.len()
                );
                report.duplicates += counted.len() as u64;
                return Ok(());
            }
            CommitOutcome::Partial(gone) => {
                // Some tasks of the batch were committed elsewhere meanwhile: recount the rest alone.
                report.duplicates += gone.len() as u64;
                tasks
                    .retain(|t| !gone.contains(&t.id) && counted.iter().any(|(id, _)| *id == t.id));
            }
        }
    }
}
