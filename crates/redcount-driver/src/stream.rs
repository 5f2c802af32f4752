//! `redcount stream`: a micro-batch streaming job. Files are injected at a fixed rate (a batch of B
//! files every B/R seconds) while workers process them; the schedule is kept even when workers fall
//! behind, so a backlog shows as growing latency. Every file's latency (injected -> committed, both on
//! this machine's clock) comes from the job's `done` stream; faults come from [`crate::faults`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redcount_latency::{Analysis, LatencyRow, Percentiles, Recovery, Spill};
use redcount_protocol::{Job, JobEvent, Link, LinkOptions, NewTask, Now, StopKind};

use crate::faults::{FaultPlan, FaultRunner};
use crate::plan::plan_tasks;
use crate::pool::start_workers;
use crate::report::{check_writable, report, Summary};
use crate::session::{open_session, JobKind, Schedule};
use crate::wait::{progress_bar, wait_until_finished};
use crate::JobOptions;

/// How long a stream's workers count before they commit: every file's latency includes it, so much
/// shorter than a batch job's 250 ms (measured: p50 118 ms at 250 ms, 25 ms at 20 ms, 1,000 files/s;
/// at 4,000 files/s of 26 kB, p99 61 ms at 20 ms and 49 ms at 10 ms, with as many commits).
pub const STREAM_BATCH_TIME: Duration = Duration::from_millis(10);

/// When injection stops.
#[derive(Debug, Clone, Copy)]
pub enum StreamLimit {
    /// Each input once.
    Once,
    /// This many files, cycling through the inputs.
    Files(u64),
    /// Until this much time has passed, cycling through the inputs.
    Duration(Duration),
}

/// Everything `redcount stream` can be asked.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// What every job has.
    pub common: JobOptions,
    /// Files per second.
    pub rate: f64,
    /// Files per micro-batch.
    pub batch: usize,
    /// When injection stops.
    pub limit: StreamLimit,
    /// Write one latency row per file here.
    pub latency_out: Option<PathBuf>,
    /// Draw the latency timeline here (.svg or .png).
    pub plot: Option<PathBuf>,
    /// With a log latency axis.
    pub plot_log_y: bool,
    /// Faults to inject while the stream runs.
    pub faults: FaultPlan,
}

/// What a stream job produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamSummary {
    /// What a batch job reports.
    #[serde(flatten)]
    pub summary: Summary,
    /// Files injected per second.
    pub rate: f64,
    /// Files injected.
    pub injected_files: u64,
    /// How long injection took.
    pub injection_seconds: f64,
    /// Committed files per second, from the first injection to the last commit.
    pub files_per_second: f64,
    /// Latency percentiles over every committed file (those older than the history included).
    pub latency: Percentiles,
    /// How long latency took to recover after each event.
    pub recoveries: Vec<Recovery>,
    /// The job's fault and operator events.
    pub events: Vec<JobEvent>,
    /// One row per committed file of the job's history (the newest `--history` files).
    #[serde(skip)]
    pub rows: Vec<LatencyRow>,
}

impl StreamSummary {
    /// The batch summary, then latency and recovery lines.
    pub fn print(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.summary.print(out)?;
        let l = &self.latency;
        writeln!(
            out,
            "stream: {} files injected at {:.1}/s over {:.1} s; {:.1} files/s committed; latency p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            self.injected_files, self.rate, self.injection_seconds, self.files_per_second, l.p50, l.p90, l.p99, l.max
        )?;
        let start = self.rows.first().map(|r| r.injected_at_ms).unwrap_or(0);
        for r in &self.recoveries {
            writeln!(out, "{}", r.describe(start))?;
        }
        Ok(())
    }
}

/// A stream stopped before its end (Ctrl-C, SIGTERM): its job is cancelled, so its workers leave
/// and no view shows it running, and every latency row read so far goes to `--latency-out`.
/// Returns the error to exit with.
fn stop_interrupted(session: &mut crate::session::Session, injected: u64) -> anyhow::Error {
    let reason = format!("the stream was stopped after injecting {injected} files");
    if let Err(err) = session.follow_commits(Duration::from_millis(1)) {
        tracing::warn!("could not read the last commits: {err}");
    }
    if let Err(err) = session
        .job
        .stop(Now::Coordinator, StopKind::Cancelled, &reason)
    {
        tracing::warn!("could not mark job '{}' cancelled: {err}", session.name);
    }
    let events = session.job.events().unwrap_or_default();
    let mut analysis = Analysis::new(&session.recent_commits(), events);
    analysis.include_spilled(&session.spill);
    let rows = session.spill.count() + analysis.rows.len() as u64;
    if let Err(err) = session.spill.finish(&analysis.rows) {
        return err.context("writing the latency rows of the stopped stream");
    }
    anyhow::anyhow!(
        "interrupted: {reason}; job '{}' at {} is cancelled; {rows} files' latency written",
        session.name,
        session.job.addr()
    )
}

/// Runs a stream job to the end (injection, then the tail) and measures it.
pub fn stream(options: &StreamOptions, interrupted: &AtomicBool) -> anyhow::Result<StreamSummary> {
    let common = &options.common;
    if !(options.rate > 0.0 && options.rate.is_finite()) {
        bail!(
            "--rate must be a positive number of files per second, got {}",
            options.rate
        );
    }
    let batch = options.batch.max(1);
    let outputs: Vec<(&str, &std::path::Path)> = [
        ("--out", common.out.as_deref()),
        ("--latency-out", options.latency_out.as_deref()),
        ("--plot", options.plot.as_deref()),
    ]
    .into_iter()
    .filter_map(|(flag, path)| Some((flag, path?)))
    .collect();
    check_writable(&outputs)?;
    let mut session = open_session(common, JobKind::Stream)?;
    let pool = start_workers(&session, common)?;
    // Streamed files are not split: one file, one task, one latency.
    let catalogue: Vec<NewTask> = plan_tasks(&session.files, common.format, u64::MAX, 0);
    let total_files = match options.limit {
        StreamLimit::Once => Some(catalogue.len() as u64),
        StreamLimit::Files(n) => Some(n),
        StreamLimit::Duration(_) => None,
    };

    // The schedule on the coordinator's clock: batch k is due at `due_zero + k * interval`, whenever
    // Redis actually accepts it (during an outage the batches pile up and go in late, each with the
    // time it was due, so latency counts the whole wait).
    let due_zero = session.status()?.now_ms;
    let interval = Duration::from_secs_f64(batch as f64 / options.rate);
    session.follow_schedule(Schedule {
        catalogue,
        per_batch: batch as u64,
        interval,
        due_zero_ms: due_zero,
    });
    // Commits older than the job's history leave Redis: their rows go to the CSV as they leave.
    session.spill = Spill::new(options.latency_out.as_deref())?;
    let start = Instant::now();
    let faults = match (&pool, options.faults.is_empty()) {
        (Some(pool), false) => {
            let events_job = Job::new(
                Link::open(&session.url, LinkOptions::default())?,
                &session.name,
            )?;
            Some(FaultRunner::start(
                options.faults.clone(),
                pool.clone(),
                events_job,
                start,
            ))
        }
        _ => None,
    };
    let bar = progress_bar(common.progress);
    let mut injected: u64 = 0;
    let mut injection_seconds = 0.0;
    // Injection and the tail; stopped (Ctrl-C, SIGTERM) anywhere in it, even inside a blocking
    // read, the job is cancelled and the latency so far written.
    let mut inject_and_wait = || -> anyhow::Result<crate::session::JobResult> {
        let mut next_batch = 0u32;
        'inject: loop {
            let due = start + interval * next_batch;
            if let StreamLimit::Duration(d) = options.limit {
                if due.duration_since(start) >= d {
                    break;
                }
            }
            if total_files.is_some_and(|n| injected >= n) {
                break;
            }
            if interrupted.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            // Keep the schedule: until the batch is due, read the commits (their records leave Redis
            // once older than the job's history); when late, inject at once.
            while let Some(wait) = due.checked_duration_since(Instant::now()) {
                if wait < Duration::from_millis(2) {
                    std::thread::sleep(wait);
                    break;
                }
                // A job that ended before its stream did (cancelled by an operator, failed on a
                // lost key) takes no more files: the wait below says why.
                if session.follow_commits(wait - Duration::from_millis(1))? {
                    break 'inject;
                }
            }
            let count = match total_files {
                Some(n) => (n - injected).min(batch as u64),
                None => batch as u64,
            };
            session
                .enqueue_scheduled(injected + count)
                .context("injecting files")?;
            injected += count;
            next_batch += 1;
            bar.set_message(format!("injected {injected} files"));
        }
        injection_seconds = start.elapsed().as_secs_f64();
        session.seal()?;
        wait_until_finished(&mut session, common, pool.as_deref(), &bar, interrupted)
    };
    let result = match inject_and_wait() {
        Err(_) if interrupted.load(Ordering::Relaxed) => {
            return Err(stop_interrupted(&mut session, injected));
        }
        other => other?,
    };
    bar.finish_and_clear();
    // A stream's files are the ones it injected (its inputs, cycled through), not its inputs.
    let summary = report(&session, common, result, injected)?;
    if let Some(faults) = faults {
        faults.stop();
    }

    let mut analysis = Analysis::new(&session.recent_commits(), session.job.events()?);
    analysis.include_spilled(&session.spill);
    session.spill.finish(&analysis.rows)?;
    // Titles name the run's settings, not its random job name.
    let title = format!(
        "stream: {} files at {:.0}/s in batches of {}, {} workers, lease {} ms",
        injected,
        options.rate,
        batch,
        common.workers,
        common.spec.lease.get().as_millis()
    );
    analysis.write(None, options.plot.as_deref(), &title, options.plot_log_y)?;
    if let Some(pool) = pool.and_then(|p| Arc::try_unwrap(p).ok()) {
        pool.finish(Duration::from_secs(5));
    }
    Ok(StreamSummary {
        summary,
        rate: options.rate,
        injected_files: injected,
        injection_seconds,
        files_per_second: analysis.files_per_second(),
        latency: analysis.percentiles,
        recoveries: analysis.recoveries,
        events: analysis.events,
        rows: analysis.rows,
    })
}
