//! What `run` and `stream` share: the job's options, opening a job (inputs, Redis, spec), starting
//! workers, and reading the result at the end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redcount_protocol::{now_ms, Job, JobSpec, Link, LinkOptions, Status};
use redcount_server::{RedisServer, ServerOptions};

use crate::plan::FormatChoice;
use crate::pool::WorkerPool;
use crate::report::{write_out_file, Summary};

/// Options every job has, whatever feeds it.
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub inputs: Vec<String>,
    /// Worker processes to start; 0 = wait for workers started elsewhere.
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
    pub top: usize,
    pub out: Option<PathBuf>,
    pub progress: bool,
    /// The `redcount` executable, to start workers with.
    pub worker_exe: PathBuf,
    /// More flags for every started worker.
    pub worker_args: Vec<String>,
}

impl JobOptions {
    /// Defaults for counting `inputs` with `workers` workers started from `worker_exe`.
    pub fn new(inputs: Vec<String>, workers: usize, worker_exe: PathBuf) -> JobOptions {
        JobOptions {
            inputs,
            workers,
            redis: None,
            job: None,
            lease_ms: 5_000,
            max_attempts: 5,
            format: FormatChoice::Auto,
            csv_column: "text".into(),
            tokenizer: "whitespace".into(),
            lowercase: false,
            dictionary: None,
            top: 10,
            out: None,
            progress: false,
            worker_exe,
            worker_args: Vec::new(),
        }
    }
}

/// An open job: its inputs, its Redis (kept alive while the session lives) and a connection to it.
pub struct Session {
    pub files: Vec<PathBuf>,
    pub url: String,
    pub job: Job,
    pub name: String,
    pub started: Instant,
    /// The private Redis, stopped when the session is dropped.
    pub server: Option<RedisServer>,
}

/// Checks the inputs (a path that names nothing is an error before anything starts), starts a private
/// Redis unless one is given, and creates the job with its spec.
pub fn open_session(options: &JobOptions) -> anyhow::Result<Session> {
    let started = Instant::now();
    let files = redcount_input::expand::expand(&options.inputs)?;
    if files.is_empty() {
        bail!("the inputs name no files");
    }
    let dictionary = match &options.dictionary {
        Some(d) => {
            let d =
                std::path::absolute(d).with_context(|| format!("dictionary {}", d.display()))?;
            std::fs::metadata(&d)
                .with_context(|| format!("cannot read the dictionary {}", d.display()))?;
            Some(d)
        }
        None => None,
    };
    let (server, url) = match &options.redis {
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
    let (created, existing) = job.create(now_ms(), &redcount_server::random_hex(8), &spec)?;
    if !created {
        bail!(
            "job '{name}' already exists at {} (run {existing}); pick another --job name, \
             or read its result with `redcount top --job {name}`",
            job.addr()
        );
    }
    Ok(Session {
        files,
        url,
        job,
        name,
        started,
        server,
    })
}

/// Starts the session's workers, or says how to start them elsewhere when there are none.
pub fn start_workers(
    session: &Session,
    options: &JobOptions,
) -> anyhow::Result<Option<WorkerPool>> {
    if options.workers == 0 {
        eprintln!(
            "waiting for workers: run `REDIS_URL=<url> redcount worker --job {}` against {}",
            session.name,
            session.job.addr()
        );
        return Ok(None);
    }
    let pool = WorkerPool::spawn(
        &options.worker_exe,
        &session.url,
        &session.name,
        options.workers,
        &options.worker_args,
    )?;
    Ok(Some(pool))
}

/// Reads the result of a finished job (top K, `--out`, failed inputs) and lets the workers exit.
pub fn finish(
    session: &mut Session,
    options: &JobOptions,
    status: &Status,
    pool: Option<WorkerPool>,
) -> anyhow::Result<Summary> {
    let wall = session.started.elapsed().as_secs_f64();
    let top = session.job.top(options.top)?;
    if let Some(out) = &options.out {
        write_out_file(out, &session.job.all_counts()?)?;
    }
    let failed = session.job.dead_tasks()?;
    if let Some(pool) = pool {
        pool.finish(Duration::from_secs(5));
    }
    Ok(Summary::new(
        &session.name,
        session.files.len() as u64,
        status,
        wall,
        failed,
        &top,
    ))
}

/// CPUs this process may use (the default number of workers).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
