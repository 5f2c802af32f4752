//! Waiting for a job to finish: wakes on every commit (a blocking read of the `done` stream), draws a
//! progress bar when stderr is a terminal, and notices when every worker has died.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use redcount_protocol::{now_ms, Job, Status};

use crate::pool::WorkerPool;

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

/// Blocks until the job is finished and returns its final status.
pub fn wait_until_finished(
    job: &mut Job,
    pool: Option<&WorkerPool>,
    bar: &ProgressBar,
    live_window_ms: u64,
    interrupted: &AtomicBool,
) -> anyhow::Result<Status> {
    loop {
        let status = job.status(now_ms(), live_window_ms)?;
        bar.set_length(status.bytes);
        bar.set_position(status.done_bytes);
        bar.set_message(format!(
            "tasks {}/{} · in flight {} · failed {} · workers {}",
            status.done, status.tasks, status.in_flight, status.dead, status.live_workers
        ));
        if status.finished {
            return Ok(status);
        }
        if interrupted.load(Ordering::Relaxed) {
            bail!(
                "interrupted: job '{}' left unfinished at {}",
                job.name(),
                job.addr()
            );
        }
        if let Some(pool) = pool {
            let (running, failed) = pool.poll();
            if running == 0 && !job.status(now_ms(), live_window_ms)?.finished {
                bail!(
                    "every worker exited before job '{}' finished ({} failed: {:?}); their errors are above",
                    job.name(),
                    failed.len(),
                    failed
                );
            }
        }
        job.wait_for_commit(&format!("{}-0", status.done), Duration::from_millis(200))?;
    }
}
