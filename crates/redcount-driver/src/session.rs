//! What `run` and `stream` share: the job's options, opening a job (inputs, Redis, spec), feeding it,
//! keeping it whole when Redis crashes (re-create, re-enqueue, re-seal), and reading the result only
//! from a state in which the job is finished.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redcount_protocol::{
    now_ms, Error as ProtocolError, Job, JobSpec, Link, LinkOptions, NewTask, Status,
    DEFAULT_LEASE_MS, DEFAULT_MAX_ATTEMPTS,
};

use crate::checkpoint::Checkpointer;
use crate::embedded::{Durability, EmbeddedRedis};
use crate::plan::FormatChoice;
use crate::pool::WorkerPool;
use crate::report::{write_out_file, Summary};

/// Where to crash the private Redis on purpose (hidden flag `--chaos-redis-at`, for tests and demos).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosPoint {
    /// After the first batch of tasks is enqueued, before the rest and the seal.
    Enqueue,
    /// Once the job is seen finished, before its result is read.
    Finish,
}

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
    /// How the private Redis keeps its data.
    pub durability: Durability,
    /// `BGSAVE` this often (any Redis).
    pub checkpoint: Option<Duration>,
    /// Crash and restart the private Redis this often.
    pub chaos_every: Option<Duration>,
    pub chaos_at: Vec<ChaosPoint>,
    /// Replicas that must have each commit before a worker counts it done.
    pub sync_replicas: u32,
}

impl JobOptions {
    /// Defaults for counting `inputs` with `workers` workers started from `worker_exe`.
    pub fn new(inputs: Vec<String>, workers: usize, worker_exe: PathBuf) -> JobOptions {
        JobOptions {
            inputs,
            workers,
            redis: None,
            job: None,
            lease_ms: DEFAULT_LEASE_MS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
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
            durability: Durability::None,
            checkpoint: None,
            chaos_every: None,
            chaos_at: Vec::new(),
            sync_replicas: 0,
        }
    }
}

/// An open job and everything needed to rebuild it after Redis lost some or all of it.
pub struct Session {
    pub files: Vec<PathBuf>,
    pub url: String,
    pub job: Job,
    pub name: String,
    pub started: Instant,
    /// The private Redis, stopped when the session is dropped.
    pub server: Option<EmbeddedRedis>,
    run_id: String,
    spec: JobSpec,
    /// Every task enqueued so far, to re-send after a rollback.
    tasks: Vec<NewTask>,
    sealed: bool,
    /// Times the job was created again from scratch because Redis had lost it entirely.
    pub recreated: u64,
    /// The Redis server's run id at the last check: it changes on every restart.
    server_run: String,
    /// Task id -> the distinct times it was committed, from the `done` stream (two or more: committed,
    /// undone by a rollback or a lost Redis, committed again).
    committed: HashMap<String, Vec<u64>>,
    /// Records of the `done` stream read so far in the current Redis state.
    done_cursor: u64,
    _checkpointer: Option<Checkpointer>,
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
        Some(url) => {
            if options.chaos_every.is_some() || !options.chaos_at.is_empty() {
                bail!("--chaos-redis only crashes the private Redis: drop --redis to use it");
            }
            (None, url.clone())
        }
        None => {
            let server = EmbeddedRedis::start(options.durability, options.chaos_every)?;
            let url = server.url().to_string();
            (Some(server), url)
        }
    };
    let checkpoint_every = match (options.checkpoint, options.durability) {
        (Some(every), _) => Some(every),
        // RDB durability means checkpoints: once a second unless told otherwise.
        (None, Durability::Rdb) if server.is_some() => Some(Duration::from_secs(1)),
        _ => None,
    };
    let checkpointer = checkpoint_every
        .map(|every| Checkpointer::start(&url, every))
        .transpose()?;
    let name = options
        .job
        .clone()
        .unwrap_or_else(|| format!("wc-{}", redcount_server::random_hex(4)));
    let mut job = Job::new(Link::open(&url, LinkOptions::default())?, &name)?;
    tracing::info!("job '{name}' on redis {}", job.addr());
    if server.is_none() {
        report_external_durability(&mut job, options.durability != Durability::None);
    }
    let spec = JobSpec {
        tokenizer: options.tokenizer.clone(),
        lowercase: options.lowercase,
        dictionary,
        csv_column: options.csv_column.clone(),
        lease_ms: options.lease_ms,
        max_attempts: options.max_attempts,
        sync_replicas: options.sync_replicas,
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
    Ok(Session {
        files,
        url,
        job,
        name,
        started,
        server,
        run_id,
        spec,
        tasks: Vec::new(),
        sealed: false,
        recreated: 0,
        server_run: String::new(),
        committed: HashMap::new(),
        done_cursor: 0,
        _checkpointer: checkpointer,
    })
}

/// An external Redis keeps its own persistence settings: say what they are (loudly if the user asked
/// for a durability that only applies to the private Redis).
fn report_external_durability(job: &mut Job, asked: bool) {
    if job.addr().starts_with("redis+raft://") {
        tracing::info!(
            "raft group: every acknowledged commit is in the fsynced logs of a majority"
        );
        return;
    }
    let mut get = |key: &str| -> String {
        job.query::<Vec<String>>("CONFIG GET", redis::cmd("CONFIG").arg("GET").arg(key))
            .ok()
            .and_then(|v| v.get(1).cloned())
            .unwrap_or_else(|| "?".into())
    };
    let (save, aof, fsync) = (get("save"), get("appendonly"), get("appendfsync"));
    let settings = format!("save '{save}', appendonly {aof}, appendfsync {fsync}");
    if asked {
        tracing::warn!("--durability applies to the private Redis only; the external one keeps its own: {settings}");
    } else {
        tracing::info!("external redis persistence: {settings}");
    }
}

impl Session {
    /// Enqueues tasks (remembered, to re-send after a rollback).
    pub fn enqueue(&mut self, tasks: &[NewTask]) -> anyhow::Result<()> {
        for chunk in tasks.chunks(1000) {
            match self.job.enqueue(now_ms(), chunk) {
                Ok(_) => {}
                Err(ProtocolError::NoJob { .. }) => self.recreate()?,
                Err(e) => return Err(anyhow::Error::new(e).context("enqueueing tasks")),
            }
        }
        self.tasks.extend_from_slice(tasks);
        Ok(())
    }

    /// Creates the job again (Redis lost it) and re-sends every task, re-sealing if it was sealed.
    fn recreate(&mut self) -> anyhow::Result<()> {
        tracing::warn!("job '{}' is gone from redis (restarted without its data): running it again from the start", self.name);
        self.job.create(now_ms(), &self.run_id, &self.spec)?;
        self.recreated += 1;
        self.done_cursor = 0;
        self.resend()?;
        if self.sealed {
            self.seal()?;
        }
        Ok(())
    }

    /// Seals the job, re-sending every task first if Redis lost some meanwhile.
    pub fn seal(&mut self) -> anyhow::Result<()> {
        self.sealed = true;
        for _ in 0..10 {
            let (sealed, there) = match self.job.seal(now_ms(), self.tasks.len() as u64) {
                Ok(answer) => answer,
                Err(ProtocolError::NoJob { .. }) => {
                    self.recreate()?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if sealed {
                return Ok(());
            }
            if there > self.tasks.len() as u64 {
                bail!("job '{}' holds {there} tasks but {} were enqueued: something else writes to it", self.name, self.tasks.len());
            }
            tracing::warn!(
                "redis holds {there} of {} tasks (a rollback): sending them again",
                self.tasks.len()
            );
            self.resend()?;
        }
        bail!(
            "job '{}' kept losing tasks while being sealed; is Redis crashing in a loop?",
            self.name
        )
    }

    fn resend(&mut self) -> anyhow::Result<()> {
        let tasks = std::mem::take(&mut self.tasks);
        let sent = self.enqueue(&tasks);
        if sent.is_err() {
            self.tasks = tasks;
        }
        sent
    }

    /// The job's status, after repairing what a Redis crash undid: the job re-created when Redis lost
    /// it, tasks re-sent when a rollback lost some, the seal renewed.
    pub fn status(&mut self, live_window_ms: u64) -> anyhow::Result<Status> {
        let status = match self.job.status(now_ms(), live_window_ms) {
            Ok(s) => s,
            Err(ProtocolError::NoJob { .. }) => {
                self.recreate()?;
                self.job.status(now_ms(), live_window_ms)?
            }
            Err(e) => return Err(e.into()),
        };
        if status.run_id != self.run_id {
            bail!(
                "job '{}' at {} now belongs to another run ({}); stopping",
                self.name,
                self.job.addr(),
                status.run_id
            );
        }
        // After a restart the done stream may have been rolled back and rewritten: read it again from
        // the start (records already seen are recognised by their commit time).
        let run = server_run_id(&mut self.job)?;
        if run != self.server_run {
            if !self.server_run.is_empty() {
                tracing::warn!(
                    "redis restarted; re-reading the job's commits ({} now)",
                    status.done
                );
            }
            self.server_run = run;
            self.done_cursor = 0;
        }
        if status.tasks < self.tasks.len() as u64 || (self.sealed && status.state != "sealed") {
            tracing::warn!(
                "redis holds {} of {} tasks (a rollback): sending them again",
                status.tasks,
                self.tasks.len()
            );
            self.resend()?;
            if self.sealed {
                self.seal()?;
            }
            return Ok(self.job.status(now_ms(), live_window_ms)?);
        }
        Ok(status)
    }

    /// Waits up to `timeout` for commits and records which tasks they were.
    pub fn follow_commits(&mut self, timeout: Duration) -> anyhow::Result<()> {
        for (task, at) in self.job.commits_after(self.done_cursor, timeout)? {
            self.done_cursor += 1;
            let times = self.committed.entry(task).or_default();
            if !times.contains(&at) {
                times.push(at);
            }
        }
        Ok(())
    }

    /// Reads the `done` stream up to its first `done` records (the job's count), so that no commit
    /// goes unrecorded before the result is read or Redis is crashed on purpose.
    pub fn catch_up(&mut self, done: u64) -> anyhow::Result<()> {
        let mut rounds = 0;
        while self.done_cursor < done && rounds < 1000 {
            self.follow_commits(Duration::from_millis(1))?;
            rounds += 1;
        }
        Ok(())
    }

    /// Tasks whose commit was seen more than once: committed, undone by a rollback, committed again.
    pub fn recomputed_after_rollback(&self) -> u64 {
        self.committed
            .values()
            .filter(|times| times.len() > 1)
            .count() as u64
    }

    /// Crashes the private Redis now (for `--chaos-redis-at`).
    pub fn crash_redis(&self) {
        if let Some(server) = &self.server {
            server.crash_and_restart();
        }
    }
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

/// Reads the result of a finished job (top K, `--out`, failed inputs) and lets the workers exit. The
/// result is read between two checks that Redis did not restart and the job is still finished, so a
/// crash right after the last commit cannot make it print a partial result; `Ok(None)` means it did,
/// and the caller goes back to waiting.
pub fn read_result(
    session: &mut Session,
    options: &JobOptions,
    status: &Status,
) -> anyhow::Result<Option<Summary>> {
    let before = server_run_id(&mut session.job)?;
    let top = session.job.top(options.top)?;
    let all = match &options.out {
        Some(_) => Some(session.job.all_counts()?),
        None => None,
    };
    let failed = session.job.dead_tasks()?;
    let after = session.job.status(now_ms(), 3 * options.lease_ms);
    let same = matches!(&after, Ok(s) if s.finished && s.commits == status.commits && s.run_id == status.run_id)
        && server_run_id(&mut session.job)? == before;
    if !same {
        tracing::warn!(
            "redis restarted while the result was being read: waiting for the job again"
        );
        return Ok(None);
    }
    if let (Some(out), Some(all)) = (&options.out, all) {
        write_out_file(out, &all)?;
    }
    let wall = session.started.elapsed().as_secs_f64();
    let mut summary = Summary::new(
        &session.name,
        session.files.len() as u64,
        status,
        wall,
        failed,
        &top,
    );
    summary.recomputed_after_rollback = session.recomputed_after_rollback();
    summary.recreated = session.recreated;
    summary.redis_restarts = session
        .server
        .as_ref()
        .map(EmbeddedRedis::restarts)
        .unwrap_or(0);
    Ok(Some(summary))
}

/// The Redis server's own run id: it changes on every restart.
fn server_run_id(job: &mut Job) -> anyhow::Result<String> {
    let info: String = job.query("INFO server", redis::cmd("INFO").arg("server"))?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .unwrap_or("")
        .trim()
        .to_string())
}

/// CPUs this process may use (the default number of workers).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
