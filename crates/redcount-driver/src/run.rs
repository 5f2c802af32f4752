//! `redcount run`: a batch job, start to finish: plan every input, enqueue, seal, wait, report.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use std::sync::atomic::Ordering;

use redcount_protocol::Now;

use crate::pool::{start_workers, WorkerPool};
use crate::report::{check_writable, report, Summary};
use crate::session::{open_session, JobKind, JobResult, Session};
use crate::wait::{progress_bar, wait_until_finished};
use crate::{ChaosPoint, JobOptions};

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
    let kind = JobKind::Batch {
        split_bytes: options.split_bytes,
        no_pack: options.no_pack,
    };
    let mut session = open_session(common, kind)?;
    let pool = start_workers(&session, common)?;
    let bar = progress_bar(common.progress);
    let counted = enqueue_and_wait(&mut session, common, pool.as_deref(), &bar, interrupted);
    bar.finish_and_clear();
    let result = match counted {
        Ok(result) => result,
        Err(err) => {
            return Err(left_unfinished(
                &mut session,
                pool.as_deref(),
                err,
                interrupted,
            ))
        }
    };
    if let Some(pool) = pool.and_then(|p| std::sync::Arc::try_unwrap(p).ok()) {
        pool.finish(Duration::from_secs(5));
    }
    let files = session.file_count;
    report(&session, common, result, files)
}

/// Enqueues the planned tasks (all of them again on a resume: the ones already there are
/// skipped), seals the job and waits for its end.
fn enqueue_and_wait(
    session: &mut Session,
    common: &JobOptions,
    pool: Option<&WorkerPool>,
    bar: &indicatif::ProgressBar,
    interrupted: &AtomicBool,
) -> anyhow::Result<JobResult> {
    let planned = session.planned.len();
    session.enqueue_planned(planned.min(1000))?;
    if common.chaos_at.contains(&ChaosPoint::Enqueue) {
        session.crash_redis();
    }
    session.enqueue_planned(planned)?;
    session.seal()?;
    wait_until_finished(session, common, pool, bar, interrupted)
}

/// A run that stops before its job is finished (Ctrl-C, or an error): its workers are stopped and
/// leave the job (so it shows no live workers), and when it was interrupted the message says
/// how the job goes on: run the same command again to resume it, or cancel it.
fn left_unfinished(
    session: &mut Session,
    pool: Option<&WorkerPool>,
    err: anyhow::Error,
    interrupted: &AtomicBool,
) -> anyhow::Error {
    if let Some(pool) = pool {
        pool.kill_all();
        let _ = session.job.leave(Now::Coordinator, &pool.names());
    }
    if !interrupted.load(Ordering::Relaxed) {
        return err;
    }
    let name = session.name.clone();
    let progress = session
        .job
        .status(Now::Coordinator, Duration::from_secs(1))
        .map(|s| format!(" at {} of {} tasks", s.done + s.dead, s.tasks))
        .unwrap_or_default();
    if session.server.is_some() {
        return anyhow::anyhow!(
            "interrupted: job '{name}' stopped{progress}; its private Redis stops with it, so \
             nothing is left to resume (run jobs on a Redis of your own, --redis URL, to resume them)"
        );
    }
    anyhow::anyhow!(
        "interrupted: job '{name}' left unfinished{progress} at {}: run the same command again \
         to resume it, or `redcount jobs cancel {name}` to stop it",
        session.job.addr()
    )
}
