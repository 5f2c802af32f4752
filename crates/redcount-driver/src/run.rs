//! `redcount run`: a batch job, start to finish: plan every input, enqueue, seal, wait, report.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::plan::{default_split_bytes, pack_tasks, plan_tasks};
use crate::pool::start_workers;
use crate::report::{check_writable, report, Summary};
use crate::session::open_session;
use crate::wait::{progress_bar, wait_until_finished};
use crate::{available_cpus, ChaosPoint, JobOptions};

/// Everything `redcount run` can be asked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What every job has.
    pub common: JobOptions,
    /// Split size for large files (and the size small files are packed up to); chosen from the
    /// input size and worker count when None.
    pub split_bytes: Option<u64>,
    /// One task per small file instead of packing them (the course's design).
    pub no_pack: bool,
}

/// Runs a batch job and returns its summary. Errors name what failed and what to do.
pub fn run(options: &RunOptions, interrupted: &AtomicBool) -> anyhow::Result<Summary> {
    let common = &options.common;
    if let Some(out) = &common.out {
        check_writable(&[("--out", out)])?;
    }
    let mut session = open_session(common)?;
    // Workers start while tasks are being planned and enqueued.
    let pool = start_workers(&session, common)?;

    let total: u64 = session.files.iter().map(|f| f.size).sum();
    let workers_for_split = if common.workers > 0 {
        common.workers
    } else {
        available_cpus()
    };
    let split = options
        .split_bytes
        .unwrap_or_else(|| default_split_bytes(total, workers_for_split));
    let mut tasks = plan_tasks(&session.files, common.format, split, 1);
    if !options.no_pack {
        tasks = pack_tasks(tasks, split);
    }
    let first = tasks.len().min(1000);
    session.enqueue(&tasks[..first])?;
    if common.chaos_at.contains(&ChaosPoint::Enqueue) {
        session.crash_redis();
    }
    session.enqueue(&tasks[first..])?;
    session.seal()?;

    let bar = progress_bar(common.progress);
    let result = wait_until_finished(&mut session, common, pool.as_deref(), &bar, interrupted)?;
    bar.finish_and_clear();
    if let Some(pool) = pool.and_then(|p| std::sync::Arc::try_unwrap(p).ok()) {
        pool.finish(Duration::from_secs(5));
    }
    let files = session.files.len() as u64;
    report(&session, common, result, files)
}
