//! `redcount run`: the whole batch job, start to finish.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redcount_protocol::{now_ms, Job, JobSpec, Link, LinkOptions};
use redcount_server::{RedisServer, ServerOptions};

use crate::plan::{default_split_bytes, plan_tasks, sizes, FormatChoice};
use crate::pool::WorkerPool;
use crate::report::{write_out_file, Summary};
use crate::wait::{progress_bar, wait_until_finished};

/// Everything `redcount run` can be asked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub inputs: Vec<String>,
    /// Worker processes to start; 0 = only enqueue and wait for workers started elsewhere.
    pub workers: usize,
    /// External Redis; a private embedded one when None.
    pub redis: Option<String>,
    /// Job name; generated when None.
    pub job: Option<String>,
    pub lease_ms: u64,
    pub max_attempts: u32,
    pub format: FormatChoice,
    pub csv_column: String,
    pub tokenizer: String,
    pub lowercase: bool,
    pub dictionary: Option<PathBuf>,
    /// Split size for large files; chosen from the input size and worker count when None.
    pub split_bytes: Option<u64>,
    pub top: usize,
    pub out: Option<PathBuf>,
    pub progress: bool,
    /// The `redcount` executable, to start workers with.
    pub worker_exe: PathBuf,
    /// More flags for every started worker.
    pub worker_args: Vec<String>,
}

/// What a finished run produced.
pub struct RunOutcome {
    pub summary: Summary,
}

/// Runs a batch job and returns its summary. Errors name what failed and what to do.
pub fn run(options: &RunOptions, interrupted: &AtomicBool) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    // Inputs first: a path that names nothing is an error before anything starts.
    let files = redcount_input::expand::expand(&options.inputs)?;
    if files.is_empty() {
        bail!("the inputs name no files");
    }
    let dictionary = match &options.dictionary {
        Some(d) => {
            Some(std::path::absolute(d).with_context(|| format!("dictionary {}", d.display()))?)
        }
        None => None,
    };
    if let Some(d) = &dictionary {
        std::fs::metadata(d)
            .with_context(|| format!("cannot read the dictionary {}", d.display()))?;
    }

    let (_server, url) = match &options.redis {
        Some(url) => (None, url.clone()),
        None => {
            let server = RedisServer::start(ServerOptions::default())?;
            let url = server.url();
            (Some(server), url)
        }
    };
    let name = options
        .job
        .clone()
        .unwrap_or_else(|| format!("wc-{}", redcount_server::random_hex(4)));
    let mut job = Job::new(Link::open(&url, LinkOptions::default())?, &name)?;
    tracing::info!("job '{name}' on redis {}", job.addr());

    let spec = JobSpec {
        tokenizer: options.tokenizer.clone(),
        lowercase: options.lowercase,
        dictionary,
        csv_column: options.csv_column.clone(),
        lease_ms: options.lease_ms,
        max_attempts: options.max_attempts,
    };
    let run_id = redcount_server::random_hex(8);
    let (created, existing) = job.create(now_ms(), &run_id, &spec)?;
    if !created {
        bail!(
            "job '{name}' already exists at {} (run {existing}); pick another --job name, \
             or read its result with `redcount top --job {name}`",
            job.addr()
        );
    }

    // Workers start while tasks are being planned and enqueued.
    let mut pool = if options.workers > 0 {
        Some(WorkerPool::spawn(
            &options.worker_exe,
            &url,
            &name,
            options.workers,
            &options.worker_args,
        )?)
    } else {
        eprintln!(
            "waiting for workers: run `REDIS_URL=<url> redcount worker --job {name}` against {}",
            job.addr()
        );
        None
    };

    let sized = sizes(&files);
    let total: u64 = sized.iter().map(|(_, s)| s).sum();
    let workers_for_split = if options.workers > 0 {
        options.workers
    } else {
        available_cpus()
    };
    let split = options
        .split_bytes
        .unwrap_or_else(|| default_split_bytes(total, workers_for_split));
    let tasks = plan_tasks(&sized, options.format, split, 1);
    for chunk in tasks.chunks(1000) {
        job.enqueue(now_ms(), chunk).context("enqueueing tasks")?;
    }
    let (sealed, there) = job.seal(now_ms(), tasks.len() as u64)?;
    if !sealed {
        bail!(
            "job '{name}' holds {there} tasks but {} were enqueued: something else writes to it",
            tasks.len()
        );
    }

    let bar = progress_bar(options.progress);
    let status = wait_until_finished(
        &mut job,
        pool.as_mut(),
        &bar,
        3 * options.lease_ms,
        interrupted,
    )?;
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();

    let top = job.top(options.top)?;
    if let Some(out) = &options.out {
        write_out_file(out, &job.all_counts()?)?;
    }
    let failed = job.dead_tasks()?;
    if let Some(pool) = pool.take() {
        pool.finish(Duration::from_secs(5));
    }
    Ok(RunOutcome {
        summary: Summary::new(&name, files.len() as u64, &status, wall, failed, &top),
    })
}

/// CPUs this process may use (the default number of workers).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
