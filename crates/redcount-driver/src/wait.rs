//! Waiting for a job to finish: wakes on every commit (a blocking read of the `done` stream), keeps
//! the job whole across Redis crashes (see [`Session::status`]), restarts workers that left a job that
//! a rollback un-finished, draws a progress bar when stderr is a terminal, and returns the result read
//! from a finished state (see [`Session::read_result`]).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};

use crate::pool::WorkerPool;
use crate::session::{JobResult, Session};
use crate::{ChaosPoint, JobOptions};

/// A progress bar over the job's bytes, hidden unless stderr is a terminal and `wanted`.
pub fn progress_bar(wanted: bool) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Blocks until the job is finished, then reads and returns its result.
pub fn wait_until_finished(
    session: &mut Session,
    options: &JobOptions,
    pool: Option<&WorkerPool>,
    bar: &ProgressBar,
    interrupted: &AtomicBool,
) -> anyhow::Result<JobResult> {
    let mut crash_at_finish = options.chaos_at.contains(&ChaosPoint::Finish);
    // Rounds of restarting exited workers (crashed, hung on an input, or gone after a rollback
    // un-finished the job): enough for a poison input to be narrowed down (one death per split)
    // and given up, bounded so a crash loop ends.
    let mut restarts_left = 3 * options.workers.max(1)
        + 2 * (options.spec.max_attempts as usize + redcount_worker::MAX_SPLIT_DEPTH);
    loop {
        let status = session.status()?;
        tracing::debug!(
            "status: {}/{} done, {} delivered, {} in flight, {} dead, {} workers live",
            status.done,
            status.tasks,
            status.delivered,
            status.in_flight,
            status.dead,
            status.live_workers
        );
        bar.set_length(status.bytes);
        bar.set_position(status.done_bytes);
        bar.set_message(format!(
            "tasks {}/{} · in flight {} · failed {} · workers {}",
            status.done + status.dead,
            status.to_settle(),
            status.in_flight,
            status.failed_inputs(),
            status.live_workers
        ));
        if let Some(how) = status.stopped() {
            bail!(
                "job '{}' at {} was {how}: {}",
                session.name,
                session.job.addr(),
                status.stop_reason
            );
        }
        if status.finished {
            session.catch_up(status.done)?;
            if std::mem::take(&mut crash_at_finish) {
                session.crash_redis();
                continue;
            }
            if let Some(result) =
                session.read_result(&status, options.top, options.out.is_some())?
            {
                return Ok(result);
            }
            continue;
        }
        if interrupted.load(Ordering::Relaxed) {
            bail!(
                "interrupted: job '{}' left unfinished at {}",
                session.name,
                session.job.addr()
            );
        }
        if let Some(pool) = pool {
            let (running, failed) = pool.poll();
            if failed
                .iter()
                .any(|s| s.code() == Some(redcount_worker::OUT_OF_MEMORY_EXIT))
            {
                bail!(
                    "redis at {} is out of memory and refuses the job's writes (a worker's error \
                     above says how much): raise its maxmemory (`CONFIG SET maxmemory <bytes>`) or \
                     free memory; the job is kept as it is: then `redcount worker --job {}` with the \
                     same --redis finishes it",
                    session.job.addr(),
                    session.name
                );
            }
            if running < pool.len() && (running == 0 || !failed.is_empty()) {
                if restarts_left == 0 {
                    bail!(
                        "workers kept exiting before job '{}' finished ({} failed: {}); their errors are above",
                        session.name,
                        failed.len(),
                        describe_exits(&failed)
                    );
                }
                // A worker that crashed (or found itself hung on an input) is replaced, so one
                // poison input cannot use up the pool: it is charged and given up after
                // --max-attempts. Workers also leave once they see the job finished, and a
                // rollback can un-finish it.
                tracing::warn!(
                    "job '{}' is not finished but {} of {} workers exited ({}): starting them again",
                    session.name,
                    pool.len() - running,
                    pool.len(),
                    if failed.is_empty() {
                        "each on its own".to_string()
                    } else {
                        describe_exits(&failed)
                    }
                );
                restarts_left -= 1;
                pool.replace_exited()?;
            }
        }
        // Woken by the next commit or by the job's end (the last merge, a stop); the timeout only
        // bounds how late an exited worker is noticed.
        session.follow_commits(Duration::from_millis(200))?;
    }
}

/// How workers ended, in words: "killed by signal 9 (SIGKILL)", "exit code 3" (Debug printed
/// `ExitStatus(unix_wait_status(9))`).
fn describe_exits(exits: &[std::process::ExitStatus]) -> String {
    use std::os::unix::process::ExitStatusExt;
    exits
        .iter()
        .map(|status| match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
                Ok(name) => format!("killed by signal {signal} ({name})"),
                Err(_) => format!("killed by signal {signal}"),
            },
            (None, None) => status.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::describe_exits;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    #[test]
    fn worker_exits_are_described_in_words() {
        let exits = [ExitStatus::from_raw(9), ExitStatus::from_raw(3 << 8)];
        assert_eq!(
            describe_exits(&exits),
            "killed by signal 9 (SIGKILL), exit code 3"
        );
    }
}
