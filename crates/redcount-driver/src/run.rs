//! `redcount run`: a batch job, start to finish: plan every input, enqueue, seal, wait, report.

use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context};
use redcount_protocol::now_ms;

use crate::plan::{default_split_bytes, plan_tasks, sizes};
use crate::report::Summary;
use crate::session::{available_cpus, finish, open_session, start_workers, JobOptions};
use crate::wait::{progress_bar, wait_until_finished};

/// Everything `redcount run` can be asked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub common: JobOptions,
    /// Split size for large files; chosen from the input size and worker count when None.
    pub split_bytes: Option<u64>,
}

/// Runs a batch job and returns its summary. Errors name what failed and what to do.
pub fn run(options: &RunOptions, interrupted: &AtomicBool) -> anyhow::Result<Summary> {
    let common = &options.common;
    let mut session = open_session(common)?;
    // Workers start while tasks are being planned and enqueued.
    let pool = start_workers(&session, common)?;

    let sized = sizes(&session.files);
    let total: u64 = sized.iter().map(|(_, s)| s).sum();
    let workers_for_split = if common.workers > 0 {
        common.workers
    } else {
        available_cpus()
    };
    let split = options
        .split_bytes
        .unwrap_or_else(|| default_split_bytes(total, workers_for_split));
    let tasks = plan_tasks(&sized, common.format, split, 1);
    let job = &mut session.job;
    for chunk in tasks.chunks(1000) {
        job.enqueue(now_ms(), chunk).context("enqueueing tasks")?;
    }
    let (sealed, there) = job.seal(now_ms(), tasks.len() as u64)?;
    if !sealed {
        bail!(
            "job '{}' holds {there} tasks but {} were enqueued: something else writes to it",
            job.name(),
            tasks.len()
        );
    }

    let bar = progress_bar(common.progress);
    let status = wait_until_finished(job, pool.as_ref(), &bar, 3 * common.lease_ms, interrupted)?;
    bar.finish_and_clear();
    finish(&mut session, common, &status, pool)
}
