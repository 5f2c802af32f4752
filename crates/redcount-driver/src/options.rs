//! What a job is asked to do, whatever feeds it (`run` or `stream`): its inputs and spec, where it
//! runs, how many workers and how they behave, how the private Redis keeps its data, and where to
//! crash it on purpose.

use std::path::PathBuf;
use std::time::Duration;

use redcount_input::FormatChoice;
use redcount_protocol::JobSpec;
use redcount_worker::WorkerOptions;

use crate::embedded::Durability;

/// Where to crash the private Redis on purpose (hidden flag `--chaos-redis-at`, for tests and demos).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ChaosPoint {
    /// After the first batch of tasks is enqueued, before the rest and the seal.
    Enqueue,
    /// Once the job is seen finished, before its result is read.
    Finish,
}

/// Options every job has, whatever feeds it.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Files, directories and glob patterns to count.
    pub inputs: Vec<String>,
    /// Worker processes to start; 0 = wait for workers started elsewhere.
    pub workers: usize,
    /// External Redis; a private embedded one when None.
    pub redis: Option<String>,
    /// Job name; generated when None.
    pub job: Option<String>,
    /// What every worker of the job shares (tokenizer, lease, attempts ...).
    pub spec: JobSpec,
    /// Which format each input is read in.
    pub format: FormatChoice,
    /// How many of the most frequent words to report.
    pub top: usize,
    /// Write every word and its count here.
    pub out: Option<PathBuf>,
    /// Only words seen at least this often go to `out` (1: every word).
    pub min_count: u64,
    /// Draw a progress bar (on a terminal only).
    pub progress: bool,
    /// The `redcount` executable, to start workers with.
    pub worker_exe: PathBuf,
    /// How every started worker behaves.
    pub worker: WorkerOptions,
    /// How the private Redis keeps its data.
    pub durability: Durability,
    /// `BGSAVE` this often (any Redis).
    pub checkpoint: Option<Duration>,
    /// Crash and restart the private Redis this often.
    pub chaos_every: Option<Duration>,
    /// Crash the private Redis at these points of the job.
    pub chaos_at: Vec<ChaosPoint>,
    /// Called once the job exists, with the Redis URL and the job's name (`--ui` serves the
    /// dashboard from there); what it returns is dropped before the private Redis stops.
    pub on_open: Option<OnOpen>,
    /// A job of the same name that is there already is removed and started over (else an
    /// unfinished batch job is resumed, and anything else refused).
    pub replace: bool,
}

/// A hook called with (Redis URL, job name) once the job is created.
#[derive(Clone)]
pub struct OnOpen(pub std::sync::Arc<OpenHook>);

/// What [`OnOpen`] calls. The session keeps the guard it returns and drops it while the job's Redis
/// still runs (a dashboard's guard waits there until its pages have seen the end of the job).
pub type OpenHook = dyn Fn(&str, &str) -> anyhow::Result<OpenGuard> + Send + Sync;

/// Whatever an [`OnOpen`] hook keeps alive for the rest of the session.
pub type OpenGuard = Box<dyn std::any::Any + Send>;

impl std::fmt::Debug for OnOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnOpen(..)")
    }
}

impl JobOptions {
    /// Defaults for counting `inputs` with `workers` workers started from `worker_exe`.
    pub fn new(inputs: Vec<String>, workers: usize, worker_exe: PathBuf) -> JobOptions {
        JobOptions {
            inputs,
            workers,
            redis: None,
            job: None,
            spec: JobSpec::default(),
            format: FormatChoice::Auto,
            top: 10,
            out: None,
            min_count: 1,
            progress: false,
            worker_exe,
            worker: WorkerOptions::default(),
            durability: Durability::None,
            checkpoint: None,
            chaos_every: None,
            chaos_at: Vec::new(),
            on_open: None,
            replace: false,
        }
    }
}
