//! Command-line flags of every subcommand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use redcount_driver::embedded::Durability;
use redcount_driver::{ChaosPoint, JobOptions};
use redcount_input::FormatChoice;
use redcount_protocol::{Aggregation, BinaryFiles, JobSpec, TokenizerKind};
use redcount_worker::WorkerOptions;

/// Exact word count over Redis: stateless worker processes coordinate through one Redis (a stream of
/// tasks, leases, and one atomic commit per batch of tasks), so killed or stalled workers never lose
/// or double a count.
#[derive(Debug, Parser)]
#[command(name = "redcount", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

// One value per process, parsed once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Count the words of files, directories (recursively) and glob patterns.
    Run(RunArgs),
    /// Inject files at a fixed rate into a live job and measure every file's latency.
    Stream(StreamArgs),
    /// Join a job as a worker; exits when the job is finished.
    Worker(WorkerArgs),
    /// Show a job's progress (or list the jobs in a Redis).
    Status(StatusArgs),
    /// The jobs in a Redis as a table (state, progress, age, keys), or remove some (`jobs rm`).
    Jobs(JobsArgs),
    /// Show the current top words of a job.
    Top(TopArgs),
    /// Export every word's count of a job (`word<TAB>count`, count descending, then word bytes).
    Counts(CountsArgs),
    /// Latency of a (stream) job already in Redis: percentiles, CSV and plot, with its fault events.
    Latency(LatencyArgs),
    /// Serve a live dashboard of every job in a Redis (and Prometheus metrics at /metrics).
    Ui(UiArgs),
    /// Start, stop or inspect a local replicated Redis (primary, replicas, Sentinels).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Measure throughput and Redis cost on generated corpora (prints a markdown report; the lab's,
    /// built with `--features lab`).
    #[cfg_attr(not(feature = "lab"), command(hide = true))]
    Bench(BenchArgs),
    /// One replica of a Raft-replicated coordinator (started for you by `cluster up --raft N`).
    RaftNode(RaftNodeArgs),
    /// Run a standard set of experiments and write their data, plots and a report (the lab's,
    /// built with `--features lab`).
    #[command(subcommand)]
    #[cfg_attr(not(feature = "lab"), command(hide = true))]
    Experiment(ExperimentCommand),
    /// Print a shell completion script, e.g. `redcount completions bash >
    /// ~/.local/share/bash-completion/completions/redcount`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start a primary, replicas and Sentinels (with --shards N, a Redis Cluster of N primaries;
    /// with --raft N, a Raft group of N nodes) on free loopback ports; prints the URL to use.
    Up {
        /// Directory for the processes' config, pid, log and data files.
        #[arg(long)]
        dir: PathBuf,
        /// Replicas of the primary (default 2), or of each shard's primary with --shards (default
        /// 1). With Sentinels and 2 or more, a primary cut off from all of them refuses writes
        /// after 2 s (min-replicas-to-write), so a partitioned primary cannot take commits the
        /// failover would throw away; with 1, the promoted replica keeps taking writes alone.
        #[arg(long)]
        replicas: Option<usize>,
        /// Sentinels watching the primary; a majority of them must agree it is down.
        #[arg(long, default_value_t = 3, conflicts_with = "shards")]
        sentinels: usize,
        /// Start a Redis Cluster of this many primaries instead (`redis-server --cluster-enabled
        /// yes`): each job lives on one shard, jobs spread over them; a failed primary's replica
        /// takes over after 2 s.
        #[arg(long, conflicts_with = "raft")]
        shards: Option<usize>,
        /// Start a Raft group of this many `redcount raft-node` processes instead (odd: 3, 5, ...).
        #[arg(long, conflicts_with_all = ["replicas", "sentinels"])]
        raft: Option<usize>,
    },
    /// Stop the cluster started in DIR.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Show each node's role and replication offset (Raft: role, term, applied index; a Redis
    /// Cluster: each node's slots or primary).
    Status {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Streaming latency: a rate sweep past saturation, then killed workers and stragglers.
    Latency(LatencyExperimentArgs),
    /// Minutes of random network faults (partitions, one-way links, pauses, kills) on a 3-node Raft
    /// group behind fault proxies, with batch jobs checked against an independent count.
    Partitions(PartitionExperimentArgs),
    /// Redis and two groups of workers in network namespaces of their own (root only), with skewed
    /// clocks and 0, 1 and 10 ms round trips, against the same jobs on loopback; exact counts checked.
    Hosts(HostsExperimentArgs),
}

#[derive(Debug, Args)]
pub struct HostsExperimentArgs {
    /// Where hosts.md goes (docs/experiments holds the committed reference run).
    #[arg(long, default_value = "experiment-out")]
    pub out_dir: PathBuf,
    /// Text the corpora are cut from (default: the sample corpus).
    #[arg(long, value_name = "INPUT")]
    pub source: Vec<String>,
    /// Number of small (1-30 kB) files.
    #[arg(long, default_value_t = 1000)]
    pub small_files: usize,
    /// Size of the large-file corpus in MB.
    #[arg(long, default_value_t = 300)]
    pub large_mb: u64,
    /// Runs per setup (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

#[derive(Debug, Args)]
pub struct PartitionExperimentArgs {
    /// Where partitions.md goes (docs/experiments holds the committed reference run).
    #[arg(long, default_value = "experiment-out")]
    pub out_dir: PathBuf,
    /// How long to inject faults.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub duration: Duration,
    /// Seed of the corpus and of the fault schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Files per job (one task each).
    #[arg(long, default_value_t = 300)]
    pub files: usize,
}

#[derive(Debug, Args)]
pub struct LatencyExperimentArgs {
    /// Where the CSVs, plots and report.md go (docs/experiments holds the committed reference
    /// results). The default set runs about 3 minutes.
    #[arg(long, default_value = "experiment-out")]
    pub out_dir: PathBuf,
    /// Text the input files are cut from (default: the sample corpus).
    #[arg(long, value_name = "INPUT")]
    pub source: Vec<String>,
    #[arg(short, long, default_value_t = 2)]
    pub workers: usize,
    /// Injection rates of the sweep, files per second.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "500,1000,2000,3000,4000,5000,6000"
    )]
    pub rates: Vec<f64>,
    /// Injection time of each run.
    #[arg(long, value_parser = parse_duration, default_value = "8s")]
    pub duration: Duration,
    /// Leases of the killed-worker runs (without speculation).
    #[arg(long, value_delimiter = ',', value_parser = parse_duration, default_value = "1s,2s,4s")]
    pub leases: Vec<Duration>,
    /// Plot format: png (small files) or svg.
    #[arg(long, default_value = "png", value_parser = ["png", "svg"])]
    pub plot_format: String,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Text the corpora are built from (default: the sample corpus, corpus/sotu).
    #[arg(long, value_name = "INPUT")]
    pub source: Vec<String>,
    /// Worker counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub workers: Vec<usize>,
    /// Number of small (1-30 kB) files.
    #[arg(long, default_value_t = 1000)]
    pub small_files: usize,
    /// Size of the large-file corpus in MB.
    #[arg(long, default_value_t = 1000)]
    pub large_mb: u64,
    /// Keep the generated corpora in this directory (default: a temp dir, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Measure the coordinator instead: durability modes, replication with and without
    /// --sync-replicas, and tasks recomputed per Redis crash (2 workers).
    #[arg(long)]
    pub coordinator: bool,
    /// Measure a 3-node Raft group against plain Redis instead: throughput, commits/s, write latency,
    /// and the time from killing the leader to the next acknowledged write.
    #[arg(long, conflicts_with = "coordinator")]
    pub raft: bool,
    /// Measure reads on a 3-node Raft group's leader instead: GET and FCALL_RO rc_status at 1, 10
    /// and 50 clients, the read barrier shared by waiting reads against one round per read.
    #[arg(long, conflicts_with_all = ["coordinator", "raft"])]
    pub raft_reads: bool,
    /// Compare where counts are added up (partials merged by workers, ZINCRBY in Redis) on small
    /// files with a rich vocabulary, large files, 50,000 tiny files and millions of distinct ids;
    /// then the coordinator's capacity and a stream at 1,000 files/s.
    #[arg(long, conflicts_with_all = ["coordinator", "raft", "raft_reads"])]
    pub aggregation: bool,
    /// Run a driver and two workers on loopback, then across three hosts (network namespaces;
    /// root only): Redis on one, the driver and a worker on another, a worker on a third, with 0, 1
    /// and 10 ms round trips to Redis; --small-files and --large-mb size the corpora.
    #[arg(long, conflicts_with_all = ["coordinator", "raft", "raft_reads", "aggregation"])]
    pub hosts: bool,
    /// Run a stream at --rate files/s for --minutes against its own Redis, sampling Redis memory,
    /// the job's stream lengths and the driver's and workers' RSS every 10 s: each should stay flat
    /// once the job's history has filled.
    #[arg(long, conflicts_with_all = ["coordinator", "raft", "raft_reads", "aggregation", "hosts"])]
    pub soak: bool,
    /// Compare with the course's lab design redcount grew from (Python workers, one FCALL of
    /// ZINCRBYs per file) on --small-files rich-vocabulary files, 2 workers each; PYTHON needs
    /// redis-py (scripts/test-venv.sh makes target/test-venv/bin/python).
    #[arg(long, value_name = "PYTHON", conflicts_with_all = ["coordinator", "raft", "raft_reads", "aggregation", "hosts", "soak"])]
    pub seed: Option<PathBuf>,
    /// Count the small-file and large-file corpora from local files and from S3-compatible
    /// servers on loopback (moto_server from target/test-venv; s3s-fs and garage when they are on
    /// PATH), 2 workers, runs interleaved: throughput from the object store against local files.
    #[arg(long, conflicts_with_all = ["coordinator", "raft", "raft_reads", "aggregation", "hosts", "soak", "seed"])]
    pub object_store: bool,
    /// Time a job of 1,000 small files packed into large tasks, three workers at 25 ms a file,
    /// with one SIGKILLed every 0.2-0.7 s, against the same job without kills (runs interleaved,
    /// counts checked).
    #[arg(long, conflicts_with_all = ["coordinator", "raft", "raft_reads", "aggregation", "hosts", "soak", "seed", "object_store"])]
    pub churn: bool,
    /// Measure the counting kernel on one core (tokenize, count, build the partition blobs), the
    /// new loop against the old one for each tokenizer on English-like text, large files, a rich
    /// vocabulary and 2.2 M distinct ids; then 1 GB in 4 files and 43 MB --lowercase end to end
    /// with 2 workers, against --compare-exe when given.
    #[arg(long, conflicts_with_all = ["coordinator", "raft", "raft_reads", "aggregation", "hosts", "soak", "seed", "object_store", "churn"])]
    pub kernel: bool,
    /// Measure what a job costs beyond counting: a one-file job with an external and a private
    /// Redis, then --small-files rich-vocabulary files and --tiny-files files of ~140 bytes against
    /// the in-process 2-thread count (first commit, driver RSS, counts checked).
    #[arg(long, conflicts_with_all = ["coordinator", "raft", "raft_reads", "aggregation", "hosts", "soak", "seed", "object_store", "churn", "kernel"])]
    pub instant: bool,
    /// Number of ~140-byte files of --instant.
    #[arg(long, default_value_t = 500_000, requires = "instant")]
    pub tiny_files: usize,
    /// Another redcount executable (an older build) to run --kernel's whole jobs with, side by side.
    #[arg(long, value_name = "EXE", requires = "kernel")]
    pub compare_exe: Option<PathBuf>,
    /// Minutes of the --soak stream.
    #[arg(long, default_value_t = 10.0, requires = "soak")]
    pub minutes: f64,
    /// Files per second of the --soak stream.
    #[arg(long, default_value_t = 300.0, requires = "soak")]
    pub rate: f64,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// The Redis of an existing job (`worker`, `status`, `top`, `latency`, `counts`).
#[derive(Debug, Args)]
pub struct RedisArg {
    /// Redis URL of the job, e.g. redis://:password@host:6379, redis+sentinel://... or
    /// redis+raft://... (required here, or in REDIS_URL).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis: Option<String>,
}

/// The Redis of a new job (`run`, `stream`).
#[derive(Debug, Args)]
pub struct JobRedisArg {
    /// Redis URL, e.g. redis://:password@host:6379, redis+sentinel://... or redis+raft://...
    /// (default: a private redis-server on loopback with a random password, stopped at the end).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis: Option<String>,
}

/// Flags every job has: inputs, workers, Redis, leases, format, tokenizer, output.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// Files, directories and glob patterns to count.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Worker processes to start (default: number of CPUs); 0 only enqueues and waits for workers
    /// started elsewhere with `redcount worker`.
    #[arg(short, long)]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub redis: JobRedisArg,
    /// Job name (default: generated and printed). Several jobs can share one Redis. A `run` of a
    /// name whose job an interrupted run left unfinished resumes it (same settings and inputs, or
    /// it is refused naming the difference).
    #[arg(long)]
    pub job: Option<String>,
    /// Remove a job of the same --job name that is there already, and start over.
    #[arg(long, requires = "job")]
    pub replace: bool,
    /// How long a task may go without a commit or renewal before another worker takes it over.
    #[arg(long, alias = "lease-ms", value_name = "TIME", default_value_t = redcount_protocol::Lease::default())]
    pub lease: redcount_protocol::Lease,
    /// Times a task may be the one a worker was counting when that worker died (crashed, killed,
    /// hung) before it is given up and reported as failed. Other tasks the worker held are not
    /// charged.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    #[command(flatten)]
    pub tuning: WorkerTuning,
    /// Input format.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FormatChoice,
    /// CSV column holding the text to count.
    #[arg(long, default_value = "text")]
    pub csv_column: String,
    /// How words are cut out of the text.
    #[arg(long, value_enum, default_value = "whitespace")]
    pub tokenizer: TokenizerKind,
    /// Lowercase ASCII letters.
    #[arg(long)]
    pub lowercase: bool,
    /// Inputs that look binary (a NUL byte in their first 8 KiB): skipped and reported by name
    /// (exit status 3), or counted.
    #[arg(long, value_enum, default_value = "skip")]
    pub binary: BinaryFiles,
    /// Keep only the words listed in this file (whitespace-separated).
    #[arg(long, value_name = "FILE")]
    pub dictionary: Option<PathBuf>,
    /// How many of the most frequent words to print.
    #[arg(short = 'k', long, default_value_t = 10)]
    pub top: usize,
    /// Write every word as `word<TAB>count`, by count descending then word bytes ascending.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write only the words seen at least N times to --out.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_count: u64,
    /// Print the summary as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// How the private Redis keeps its data across a crash. An external Redis keeps its own settings
    /// (they are reported with -v).
    #[arg(long, value_enum, default_value = "none")]
    pub durability: Durability,
    /// Ask Redis for a BGSAVE checkpoint this often (default with --durability rdb: 1s).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub checkpoint_ms: Option<Duration>,
    /// SIGKILL the private redis-server this often and restart it from its files (a demonstration of
    /// recovery; the result stays exact).
    #[arg(long, value_name = "EVERY", value_parser = parse_duration)]
    pub chaos_redis: Option<Duration>,
    /// Workers wait until this many replicas have each commit (`WAIT`) before counting it done.
    #[arg(long, default_value_t = 0)]
    pub sync_replicas: u32,
    /// Where counts are added up.
    #[arg(long, value_enum, default_value = "workers")]
    pub aggregate_in: Aggregation,
    /// Partitions of the counts (with --aggregate-in workers): merges of different partitions run in
    /// parallel, and one partition is what a merging worker holds.
    #[arg(long, default_value_t = redcount_protocol::DEFAULT_PARTITIONS)]
    pub partitions: redcount_protocol::Partitions,
    /// Also crash the private Redis at these points: enqueue, finish.
    #[arg(long, value_enum, value_delimiter = ',', hide = true)]
    pub chaos_redis_at: Vec<ChaosPoint>,
    /// Started workers spend this much extra CPU time on every input file: a teaching aid that makes
    /// a job on the sample corpus last long enough to watch faults (with --chaos-redis, --kill-worker).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub worker_slow: Option<Duration>,
    /// Keep the finished job in Redis this long, then let `redcount jobs prune` (or the driver of
    /// any later job on the same Redis) remove it (default: until `redcount jobs rm`).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub keep: Option<Duration>,
    /// Commit records kept in Redis (the newest; 0: all). Older ones are trimmed as the job goes, so a
    /// stream that runs for days holds bounded memory; the driver writes every record to
    /// --latency-out before it leaves Redis.
    #[arg(long, value_name = "RECORDS", default_value_t = redcount_protocol::DEFAULT_HISTORY)]
    pub history: u64,
    /// Serve the live dashboard of this job while it runs, on 127.0.0.1:7377 or --ui=ADDR (with
    /// `=`: a word after a bare --ui is an input); the URL is printed. It stops with the job:
    /// `redcount ui --redis URL` serves any Redis for longer.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true, default_missing_value = redcount_ui::DEFAULT_LISTEN)]
    pub ui: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Split large text files into tasks of about this size, e.g. 16MiB (default: about four tasks
    /// per worker, between 1 MiB and 64 MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub split_bytes: Option<u64>,
    /// One task per small file (the course's design) instead of packing small files into tasks of
    /// about --split-bytes.
    #[arg(long)]
    pub no_pack: bool,
    /// Only show how the inputs would be cut into tasks (with --json: every task and its ranges),
    /// without Redis or workers.
    #[arg(long)]
    pub plan: bool,
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Files injected per second (a positive number).
    #[arg(long, value_parser = parse_rate)]
    pub rate: f64,
    /// Files per micro-batch (one batch every BATCH/RATE seconds).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Most time a worker counts before it commits (default 10ms: every file's latency includes it;
    /// `run` uses 250ms, fewer and larger commits).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub batch_time: Option<Duration>,
    /// Inject for this long, cycling through the inputs.
    #[arg(long, value_name = "TIME", value_parser = parse_duration, conflicts_with = "files")]
    pub duration: Option<Duration>,
    /// Inject this many files, cycling through the inputs (default: each input once).
    #[arg(long)]
    pub files: Option<u64>,
    /// Write one row per file: path, injected/claimed/committed ms, latency, worker, attempts.
    #[arg(long, value_name = "FILE.csv")]
    pub latency_out: Option<PathBuf>,
    /// Draw the latency timeline (.svg or .png).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Draw latency on a log axis (most files sit near the bottom of a linear one).
    #[arg(long)]
    pub log_y: bool,
    /// SIGKILL one worker at this time after injection starts (repeatable).
    #[arg(long, value_name = "AT", value_parser = parse_duration)]
    pub kill_worker: Vec<Duration>,
    /// Slow one worker down by FACTOR from time AT (SIGSTOP/SIGCONT duty cycle), e.g. 5s:4.
    #[arg(long, value_name = "AT:FACTOR", value_parser = parse_straggler)]
    pub straggler: Vec<(Duration, f64)>,
    /// SIGKILL the leader of the Raft group in --raft-dir at this time (repeatable); it is started
    /// again 3 s later.
    #[arg(long, value_name = "AT", value_parser = parse_duration, requires = "raft_dir")]
    pub kill_raft_leader: Vec<Duration>,
    /// The directory of the Raft group (`cluster up --raft N --dir DIR`) that --kill-raft-leader hits.
    #[arg(long, value_name = "DIR")]
    pub raft_dir: Option<PathBuf>,
    /// Replace killed workers after this delay (1s when given without one).
    #[arg(long, value_name = "DELAY", value_parser = parse_duration, num_args = 0..=1, default_missing_value = "1s")]
    pub restart_workers: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub redis: RedisArg,
    /// The job to work on.
    #[arg(long)]
    pub job: String,
    /// Lease per task (default: the job's).
    #[arg(long, alias = "lease-ms", value_name = "TIME")]
    pub lease: Option<redcount_protocol::Lease>,
    /// Deaths of its worker while counting a task before it is given up (default: the job's).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    #[command(flatten)]
    pub tuning: WorkerTuning,
    /// Consumer name (default: host-pid-random; must be unique).
    #[arg(long)]
    pub name: Option<String>,
    /// Most time spent counting before a commit (the rest of what was claimed goes into the next).
    #[arg(long, value_name = "TIME", value_parser = parse_duration, default_value = "250ms")]
    pub batch_time: Duration,
    /// How long to wait for the job to appear (workers may start before `run`).
    #[arg(long, value_name = "TIME", value_parser = parse_duration, default_value = "60s")]
    pub wait_for_job: Duration,
    /// Spend this much extra CPU time on every task (fault-injection and teaching aid).
    #[arg(long, value_name = "TIME", value_parser = parse_duration, hide = true)]
    pub slow: Option<Duration>,
}

/// How workers count, commit and merge: one set of flags for `run` and `stream` (the workers they
/// start) and `redcount worker`, read into [`WorkerOptions`] in one place ([`WorkerTuning::apply`]).
/// Their defaults are `WorkerOptions::default()`'s (a test checks clap's against it).
#[derive(Debug, Args)]
pub struct WorkerTuning {
    /// A worker counting one task for longer than this takes it for an input that hangs it and exits
    /// (the task is then charged an attempt).
    #[arg(long, value_name = "TIME", value_parser = parse_duration, default_value = "10m")]
    pub task_timeout: Duration,
    /// Most bytes of small tasks a worker claims and commits together.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "16MiB")]
    pub batch_bytes: u64,
    /// Most tasks a worker claims and commits together.
    #[arg(long, default_value_t = 1024)]
    pub batch_tasks: u64,
    /// Idle workers re-run a task running longer than FACTOR x the recent p90 (0: never).
    #[arg(long, value_name = "FACTOR", default_value_t = 3.0)]
    pub speculate_factor: f64,
    /// ... and running longer than this.
    #[arg(long, value_name = "TIME", value_parser = parse_duration, default_value = "500ms")]
    pub speculate_min: Duration,
    /// Merge a partition's partial counts once the oldest has waited this long (how far the live
    /// top words, `top --follow` and the dashboard may lag behind the commits).
    #[arg(long, value_name = "TIME", value_parser = parse_duration, default_value = "1s")]
    pub merge_after: Duration,
}

impl WorkerTuning {
    /// Sets these flags' fields of `options`.
    pub fn apply(&self, options: &mut WorkerOptions) {
        options.task_timeout = self.task_timeout;
        options.batch_bytes = self.batch_bytes.max(1);
        options.batch_tasks = self.batch_tasks.max(1);
        options.speculate_factor = self.speculate_factor.max(0.0);
        options.speculate_min = self.speculate_min;
        options.merge_after = self.merge_after;
    }
}

impl WorkerArgs {
    /// The worker's options: the one place `redcount worker` flags are read (the inverse of
    /// [`WorkerOptions::to_args`], checked by a test below).
    pub fn options(&self) -> WorkerOptions {
        let mut options = WorkerOptions {
            name: self.name.clone(),
            lease: self.lease,
            max_attempts: self.max_attempts,
            batch_time: self.batch_time,
            slow: self.slow.unwrap_or_default(),
            wait_for_job: self.wait_for_job,
            ..WorkerOptions::default()
        };
        self.tuning.apply(&mut options);
        options
    }
}

impl JobArgs {
    /// The driver's options, for a job whose workers are started from `worker_exe`.
    pub fn options(self, worker_exe: std::path::PathBuf) -> JobOptions {
        let mut options = JobOptions::new(
            self.inputs,
            self.workers.unwrap_or_else(redcount_driver::available_cpus),
            worker_exe,
        );
        options.redis = self.redis.redis;
        options.job = self.job;
        options.replace = self.replace;
        options.spec = JobSpec {
            tokenizer: self.tokenizer,
            lowercase: self.lowercase,
            dictionary: self.dictionary,
            csv_column: self.csv_column,
            lease: self.lease,
            max_attempts: self.max_attempts.max(1),
            sync_replicas: self.sync_replicas,
            aggregation: self.aggregate_in,
            partitions: self.partitions,
            keep: self.keep,
            history: self.history,
            binary: self.binary,
        };
        options.format = self.format;
        options.top = self.top;
        options.out = self.out;
        options.min_count = self.min_count;
        options.progress = !self.no_progress && !self.json;
        options.durability = self.durability;
        options.checkpoint = self.checkpoint_ms;
        options.chaos_every = self.chaos_redis;
        options.chaos_at = self.chaos_redis_at;
        options.worker.slow = self.worker_slow.unwrap_or_default();
        self.tuning.apply(&mut options.worker);
        options
    }
}

#[derive(Debug, Args)]
pub struct UiArgs {
    #[command(flatten)]
    pub redis: RedisArg,
    /// Address to serve on. Loopback by default: anything else exposes the dashboard (which has no
    /// login) to that network; put it behind a proxy with authentication instead.
    #[arg(long, default_value = redcount_ui::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub redis: RedisArg,
    /// The job (default: list the jobs in this Redis).
    #[arg(long)]
    pub job: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub redis: RedisArg,
    /// Also look for jobs by scanning every key of the Redis (jobs made by redcount before it kept
    /// a register of them), and register what is found. Reads the whole keyspace in short calls.
    #[arg(long)]
    pub scan: bool,
    #[command(subcommand)]
    pub action: Option<JobsAction>,
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// Remove jobs and every key they hold (nothing else); a job still running only with --force.
    Rm {
        #[command(flatten)]
        redis: RedisArg,
        /// The jobs to remove.
        #[arg(required = true, value_name = "JOB")]
        jobs: Vec<String>,
        /// Remove a job even while it runs (its workers then find it gone).
        #[arg(long)]
        force: bool,
    },
    /// Stop running jobs for good: their workers exit, their state says cancelled, and what they
    /// counted so far stays readable until `jobs rm`.
    Cancel {
        #[command(flatten)]
        redis: RedisArg,
        /// The jobs to cancel.
        #[arg(required = true, value_name = "JOB")]
        jobs: Vec<String>,
    },
    /// Remove the finished jobs past their --keep, or (with --older-than) every job finished longer
    /// ago than that; running jobs are never touched.
    Prune {
        #[command(flatten)]
        redis: RedisArg,
        /// Remove every job finished at least this long ago, whatever its --keep (e.g. 1h, 7d).
        #[arg(long, value_name = "TIME", value_parser = parse_duration)]
        older_than: Option<Duration>,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub redis: RedisArg,
    #[arg(long)]
    pub job: String,
    /// Write one row per file.
    #[arg(long, value_name = "FILE.csv")]
    pub latency_out: Option<PathBuf>,
    /// Draw the timeline (.svg or .png).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Draw latency on a log axis.
    #[arg(long)]
    pub log_y: bool,
}

#[derive(Debug, Args)]
pub struct CountsArgs {
    #[command(flatten)]
    pub redis: RedisArg,
    #[arg(long)]
    pub job: String,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only the words seen at least N times.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_count: u64,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub redis: RedisArg,
    #[arg(long)]
    pub job: String,
    /// How many words.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Keep showing the live top words, once a second, until the job is finished.
    #[arg(short, long)]
    pub follow: bool,
}

/// `250` (ms), `500ms`, `3s`, `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration like 500ms or 3s: {e}"))
}

/// A positive, finite number of files per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!(
            "'{s}' is not a positive number of files per second"
        )),
    }
}

/// `5s:4`: at 5 s, slow a worker down 4 times.
pub fn parse_straggler(s: &str) -> Result<(Duration, f64), String> {
    let (at, factor) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}' is not AT:FACTOR like 5s:4"))?;
    let factor: f64 = factor
        .parse()
        .map_err(|_| format!("'{factor}' is not a slow-down factor like 4"))?;
    if factor < 1.0 {
        return Err(format!(
            "the slow-down factor must be at least 1, got {factor}"
        ));
    }
    Ok((parse_duration(at)?, factor))
}

/// `1048576`, `64KiB`, `16MiB`, `1G`, `10MB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 16MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{s}' (use KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's `redcount run --ui corpus/`: the directory is an input, not the dashboard's
    /// address (an optional value is taken only as `--ui=ADDR`).
    #[test]
    fn ui_without_an_address_leaves_the_next_word_an_input() {
        let cli = Cli::try_parse_from(["redcount", "run", "--ui", "corpus/"]).expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not a run")
        };
        assert_eq!(run.job.inputs, vec!["corpus/".to_string()]);
        assert_eq!(
            run.job.ui.map(|a| a.to_string()).as_deref(),
            Some(redcount_ui::DEFAULT_LISTEN)
        );
        let cli = Cli::try_parse_from(["redcount", "run", "--ui=127.0.0.1:9", "corpus/"])
            .expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not a run")
        };
        assert_eq!(run.job.ui.map(|a| a.port()), Some(9));
    }

    #[test]
    fn durations_and_sizes_parse_as_documented() {
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("3 parsecs").is_err());
        assert_eq!(parse_straggler("5s:4"), Ok((Duration::from_secs(5), 4.0)));
        assert!(parse_straggler("5s").is_err());
        assert!(parse_straggler("5s:0.5").is_err());
    }

    #[test]
    fn worker_options_survive_the_trip_through_the_command_line() {
        let parse = |options: &WorkerOptions| {
            let mut argv = vec![
                "redcount".to_string(),
                "worker".into(),
                "--job".into(),
                "j".into(),
            ];
            argv.extend(options.to_args());
            match Cli::try_parse_from(&argv).expect("the flags parse").command {
                Command::Worker(args) => args.options(),
                other => panic!("parsed as {other:?}"),
            }
        };
        let default = WorkerOptions::default();
        assert_eq!(parse(&default), default);
        let every = WorkerOptions {
            name: Some("host-1-abc".into()),
            lease: Some(
                redcount_protocol::Lease::new(Duration::from_millis(1500)).expect("a lease"),
            ),
            max_attempts: Some(7),
            batch_bytes: 12345,
            batch_tasks: 3,
            batch_time: Duration::from_millis(40),
            slow: Duration::from_millis(25),
            task_timeout: Duration::from_millis(2500),
            wait_for_job: Duration::from_secs(2),
            speculate_factor: 2.75,
            speculate_min: Duration::from_millis(80),
            merge_after: Duration::from_millis(30),
            link: Default::default(),
        };
        assert_eq!(parse(&every), every);
    }

    #[test]
    fn worker_flags_left_out_are_worker_options_default() {
        let default = WorkerOptions::default();
        let Command::Worker(worker) = Cli::try_parse_from(["redcount", "worker", "--job", "j"])
            .expect("parses")
            .command
        else {
            panic!("not a worker")
        };
        assert_eq!(worker.options(), default);
        let Command::Run(run) = Cli::try_parse_from(["redcount", "run", "x"])
            .expect("parses")
            .command
        else {
            panic!("not a run")
        };
        let options = run.job.options("redcount".into());
        let started = WorkerOptions {
            batch_time: default.batch_time,
            ..options.worker.clone()
        };
        assert_eq!(started, default);
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

#[derive(Debug, Args)]
pub struct RaftNodeArgs {
    /// This node's id in --peers.
    #[arg(long)]
    pub id: u64,
    /// Directory for the node's Raft log, vote, snapshot and private Redis.
    #[arg(long)]
    pub dir: PathBuf,
    /// host:port to serve clients (RESP) and peers on.
    #[arg(long)]
    pub listen: String,
    /// Every member, this node included: `1=host:port,2=host:port,3=host:port`.
    #[arg(long)]
    pub peers: String,
    /// Reach these peers at these addresses instead of their --peers ones (`2=host:port,...`): a
    /// NAT, a tunnel, or the fault-injecting proxies of the network tests.
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    pub dial: Option<String>,
    /// Form the group if this node has never been part of one (first start only; harmless later).
    #[arg(long)]
    pub init: bool,
    /// File holding the password clients must AUTH with.
    #[arg(long)]
    pub requirepass_file: Option<PathBuf>,
    /// Take a snapshot (and compact the log) every this many entries.
    #[arg(long, default_value_t = 2000)]
    pub snapshot_every: u64,
    /// A quorum round of its own for every read instead of one shared by the waiting reads
    /// (for `bench --raft-reads`, which measures the difference).
    #[arg(long, hide = true)]
    pub unbatched_reads: bool,
}
