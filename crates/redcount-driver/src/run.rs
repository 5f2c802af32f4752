//! `redcount run`: a batch job, start to finish: plan every input, enqueue, seal, wait, report.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use std::sync::atomic::Ordering;

use redcount_protocol::Now;

use std::time::Instant;

use redcount_input::InputFile;
use redcount_protocol::NewTask;

use crate::plan::{split_for, LISTED_BEFORE_PLANNING};
use crate::planner::Planner;
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

/// Lists, plans and enqueues the inputs ([`plan_and_enqueue`]), seals the job and waits for its
/// end.
fn enqueue_and_wait(
    session: &mut Session,
    common: &JobOptions,
    pool: Option<&WorkerPool>,
    bar: &indicatif::ProgressBar,
    interrupted: &AtomicBool,
) -> anyhow::Result<JobResult> {
    plan_and_enqueue(session, common, interrupted)?;
    wait_until_finished(session, common, pool, bar, interrupted)
}

/// Tasks planned but not yet enqueued that are sent together (one call per chunk of them).
const SEND_AT: usize = 1000;
/// ... and the longest they wait to be sent meanwhile: the first task is enqueued within this of
/// the listing finding its inputs, however many inputs follow.
const SEND_EVERY: Duration = Duration::from_millis(50);

/// The inputs, listed, planned and enqueued as they are found, into each other: the driver holds
/// the task being packed and the tasks of the last 50 ms, not the inputs (their tasks go to a file
/// of the session, for re-sends after a rollback), and workers count the first tasks while the
/// listing goes on. Until the split size is known the first inputs are held
/// ([`LISTED_BEFORE_PLANNING`] at most): their total decides it when they are all there is.
/// The plan's facts seal the job.
fn plan_and_enqueue(
    session: &mut Session,
    common: &JobOptions,
    interrupted: &AtomicBool,
) -> anyhow::Result<()> {
    let planning = session.planning;
    let mut held: Vec<InputFile> = Vec::new();
    let mut planner: Option<Planner> = None;
    let mut pending: Vec<NewTask> = Vec::new();
    let mut last_send = Instant::now();
    let mut crash_at_enqueue = common.chaos_at.contains(&ChaosPoint::Enqueue);
    let start_planning = |held: &mut Vec<InputFile>, pending: &mut Vec<NewTask>| {
        let split = planning
            .split_bytes
            .unwrap_or_else(|| split_for(held, common));
        let mut planner = Planner::new(common.format, split, planning.pack);
        for file in held.drain(..) {
            planner.push(&file, pending);
        }
        planner
    };
    let inputs = common.inputs.clone();
    let count = redcount_input::expand::for_each_input(&inputs, &mut |file| {
        if interrupted.load(Ordering::Relaxed) {
            anyhow::bail!("interrupted while the inputs were listed");
        }
        match &mut planner {
            Some(planner) => planner.push(&file, &mut pending),
            None => {
                held.push(file);
                if planning.split_bytes.is_some() || held.len() > LISTED_BEFORE_PLANNING {
                    planner = Some(start_planning(&mut held, &mut pending));
                }
            }
        }
        if pending.len() >= SEND_AT || (!pending.is_empty() && last_send.elapsed() >= SEND_EVERY) {
            send(session, &mut pending, &mut crash_at_enqueue)?;
            last_send = Instant::now();
        }
        Ok::<(), anyhow::Error>(())
    })?;
    if count == 0 {
        // Nothing was enqueued: the job made for it goes (a resumed one has its tasks, so it
        // cannot be here).
        let _ = session.job.drop_job(Now::Coordinator, true);
        anyhow::bail!("the inputs name no files");
    }
    let planner = match planner {
        Some(planner) => planner,
        None => start_planning(&mut held, &mut pending),
    };
    let facts = planner.finish(&mut pending);
    send(session, &mut pending, &mut crash_at_enqueue)?;
    session.file_count = count;
    session.finish_plan(facts)
}

/// Enqueues the pending tasks. With `--chaos-redis-at enqueue` the private Redis is crashed once,
/// after the first [`SEND_AT`] of them: between two chunks of one enqueue.
fn send(
    session: &mut Session,
    pending: &mut Vec<NewTask>,
    crash_at_enqueue: &mut bool,
) -> anyhow::Result<()> {
    let first = if *crash_at_enqueue {
        pending.len().min(SEND_AT)
    } else {
        pending.len()
    };
    session.enqueue(&pending[..first])?;
    if first > 0 && std::mem::take(crash_at_enqueue) {
        session.crash_redis();
    }
    session.enqueue(&pending[first..])?;
    pending.clear();
    Ok(())
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
