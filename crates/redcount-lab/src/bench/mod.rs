//! `redcount bench`: the speed of the whole engine, and where its time goes. Not a test: it prints
//! numbers for docs/BENCHMARKS.md and asserts nothing.
//!
//! For each corpus (many small files; a few large ones) it first times one thread reading and then
//! counting everything in memory (the per-core cost of the worker's two steps), then runs the real job
//! with 1, 2, 4 ... workers against a fresh private Redis and reads that server's CPU seconds from
//! `INFO CPU`, so the Redis share of the work is measured, not guessed.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use redcount_count::{Tokenizer, WordCounts};
use redcount_server::{RedisServer, ServerOptions};

use redcount_driver::{JobOptions, RunOptions};
use redcount_input::FormatChoice;

mod aggregation;
mod churn;
mod coordinator;
mod hosts;
mod instant;
mod kernel;
mod object_store;
mod raft;
mod seed;
mod soak;
pub use aggregation::bench_aggregation;
pub use churn::bench_churn;
pub use coordinator::{bench_coordinator, ModeRow};
pub use hosts::{bench_hosts, measure_hosts, HostsPlan, HostsRow};
pub use instant::bench_instant;
pub use kernel::bench_kernel;
pub use object_store::{bench_object_store, ObjectStoreRow};
pub use raft::{bench_raft, bench_raft_reads};
pub use seed::bench_seed;
pub use soak::bench_soak;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Text to build the corpora from (the sample corpus by default).
    pub source: Vec<String>,
    /// Worker counts to run with.
    pub workers: Vec<usize>,
    /// Number of small files (1-30 kB each).
    pub small_files: usize,
    /// Total size of the large-file corpus, in MB (two files).
    pub large_mb: u64,
    /// Where corpora are written (a temp dir by default).
    pub dir: Option<PathBuf>,
    /// The redcount executable, to start workers with.
    pub worker_exe: PathBuf,
    /// Another redcount executable to run the same jobs with, side by side (`--compare-exe`).
    pub compare_exe: Option<PathBuf>,
}

/// One measured run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    /// Which corpus.
    pub corpus: String,
    /// Worker processes.
    pub workers: usize,
    /// Input files.
    pub files: u64,
    /// Input bytes.
    pub bytes: u64,
    /// Wall time of the run.
    pub wall_seconds: f64,
    /// Input MB per second.
    pub mb_per_second: f64,
    /// Words per second.
    pub words_per_second: f64,
    /// Commits applied.
    pub commits: u64,
    /// Word increments applied in Redis.
    pub increments: u64,
    /// CPU seconds Redis spent on the run (`INFO CPU`).
    pub redis_cpu_seconds: f64,
    /// Redis CPU seconds per GB of input.
    pub redis_cpu_seconds_per_gb: f64,
}

/// One-thread cost of the worker's steps on a corpus.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepCost {
    /// Which corpus.
    pub corpus: String,
    /// One thread reading the files, MB/s.
    pub read_mb_per_second: f64,
    /// One thread counting them in memory, MB/s.
    pub count_mb_per_second: f64,
}

/// Builds the corpora, measures, and prints a markdown report on stdout as it goes.
pub fn bench(options: &BenchOptions) -> anyhow::Result<(Vec<StepCost>, Vec<BenchRow>)> {
    let temp;
    let dir = match &options.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile_dir()?;
            temp.path().to_path_buf()
        }
    };
    let text = source_text(&options.source)?;
    let small = dir.join("small");
    let large = dir.join("large");
    write_small(&small, &text, options.small_files)?;
    write_large(&large, &text, options.large_mb * 1_000_000)?;

    let mut costs = Vec::new();
    let mut rows = Vec::new();
    println!("| corpus | workers | files | MB | wall s | MB/s | Mwords/s | commits | increments | Redis CPU s | Redis CPU s/GB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, path) in [("small files", &small), ("large files", &large)] {
        costs.push(step_cost(name, path)?);
        for &workers in &options.workers {
            let row = measure(name, path, workers, &options.worker_exe)?;
            println!(
                "| {} | {} | {} | {:.1} | {:.3} | {:.1} | {:.2} | {} | {} | {:.3} | {:.2} |",
                row.corpus,
                row.workers,
                row.files,
                row.bytes as f64 / 1e6,
                row.wall_seconds,
                row.mb_per_second,
                row.words_per_second / 1e6,
                row.commits,
                row.increments,
                row.redis_cpu_seconds,
                row.redis_cpu_seconds_per_gb
            );
            rows.push(row);
        }
    }
    println!();
    println!("| corpus | read (1 thread) MB/s | count (1 thread) MB/s |");
    println!("|---|---|---|");
    for c in &costs {
        println!(
            "| {} | {:.0} | {:.0} |",
            c.corpus, c.read_mb_per_second, c.count_mb_per_second
        );
    }
    Ok((costs, rows))
}

/// The comparison benches' corpora: small files and two large files from the source text, in
/// `--dir` or a temp dir (kept alive by the returned guard).
pub(crate) struct Corpora {
    pub small: PathBuf,
    pub large: PathBuf,
    _temp: tempfile::TempDir,
}

/// Where a bench writes its corpora: `--dir`, or a temp dir that lives as long as the guard.
pub(crate) fn corpus_dir(options: &BenchOptions) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let temp = tempfile_dir()?;
    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    Ok((temp, dir))
}

pub(crate) fn write_corpora(options: &BenchOptions) -> anyhow::Result<Corpora> {
    let (temp, dir) = corpus_dir(options)?;
    let text = source_text(&options.source)?;
    let (small, large) = (dir.join("small"), dir.join("large"));
    write_small(&small, &text, options.small_files)?;
    write_large(&large, &text, options.large_mb * 1_000_000)?;
    Ok(Corpora {
        small,
        large,
        _temp: temp,
    })
}

/// Runs a batch job to the end (not interruptible, default splits).
pub(crate) fn run_whole(common: JobOptions) -> anyhow::Result<redcount_driver::report::Summary> {
    run_job(common, true)
}

/// Runs a batch job to the end, packing small files into tasks or not.
pub(crate) fn run_job(
    common: JobOptions,
    pack: bool,
) -> anyhow::Result<redcount_driver::report::Summary> {
    let options = RunOptions {
        common,
        split_bytes: None,
        no_pack: !pack,
    };
    redcount_driver::run(&options, &AtomicBool::new(false))
}

/// A plain-text job over `path` with 2 workers, as the comparison benches run it.
/// A lease of `n` seconds (a constant of the bench, well above the shortest lease).
pub(crate) fn lease_secs(n: u64) -> redcount_protocol::Lease {
    redcount_protocol::Lease::new(Duration::from_secs(n)).expect("a lease of a second or more")
}

pub(crate) fn two_worker_job(
    options: &BenchOptions,
    path: &Path,
    lease: redcount_protocol::Lease,
) -> JobOptions {
    let mut job = JobOptions::new(
        vec![path.display().to_string()],
        2,
        options.worker_exe.clone(),
    );
    job.format = FormatChoice::Text;
    job.spec.lease = lease;
    job
}

pub(crate) fn tempfile_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("redcount-bench-")
        .tempdir()
        .context("creating a temp dir for corpora")
}

pub(crate) fn source_text(source: &[String]) -> anyhow::Result<Vec<u8>> {
    let files = redcount_input::expand::expand(source)?;
    let mut text = Vec::new();
    for f in files {
        text.extend(std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?);
        text.push(b'\n');
    }
    anyhow::ensure!(!text.is_empty(), "the benchmark source text is empty");
    Ok(text)
}

/// `n` files of 1-30 kB, cut from the source text at whitespace, sizes from a fixed seed.
pub(crate) fn write_small(dir: &Path, text: &[u8], n: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut seed: u64 = 0x5eed;
    let mut pos = 0usize;
    for i in 0..n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let size = 1_000 + (seed % 29_000) as usize;
        if pos + size >= text.len() {
            pos = 0;
        }
        let mut end = (pos + size).min(text.len());
        while end < text.len() && !redcount_count::is_space(text[end]) {
            end += 1;
        }
        let path = dir.join(format!("doc-{i:05}.txt"));
        std::fs::write(&path, &text[pos..end])
            .with_context(|| format!("writing {}", path.display()))?;
        pos = end;
    }
    Ok(())
}

/// Two files of `total / 2` bytes each, the source text repeated.
pub(crate) fn write_large(dir: &Path, text: &[u8], total: u64) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for i in 0..2 {
        let path = dir.join(format!("big-{i}.txt"));
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        let mut written = 0u64;
        while written < total / 2 {
            f.write_all(text)?;
            written += text.len() as u64;
        }
        f.flush()?;
    }
    Ok(())
}

fn step_cost(name: &str, dir: &Path) -> anyhow::Result<StepCost> {
    let files = redcount_input::expand::expand(&[dir.display().to_string()])?;
    let started = Instant::now();
    let mut data = Vec::new();
    for f in &files {
        data.push(std::fs::read(f)?);
    }
    let read_s = started.elapsed().as_secs_f64();
    let bytes: usize = data.iter().map(Vec::len).sum();
    let tokenizer = Tokenizer::whitespace();
    let started = Instant::now();
    let mut counts = WordCounts::new();
    for d in &data {
        tokenizer.count(d, &mut counts);
    }
    let count_s = started.elapsed().as_secs_f64();
    Ok(StepCost {
        corpus: name.to_string(),
        read_mb_per_second: bytes as f64 / 1e6 / read_s.max(1e-9),
        count_mb_per_second: bytes as f64 / 1e6 / count_s.max(1e-9),
    })
}

fn measure(name: &str, dir: &Path, workers: usize, exe: &Path) -> anyhow::Result<BenchRow> {
    let server = RedisServer::start(ServerOptions::default())?;
    let cpu_before = redis_cpu_seconds(&server.url())?;
    let mut common = JobOptions::new(vec![dir.display().to_string()], workers, exe.to_path_buf());
    common.redis = Some(server.url());
    common.job = Some(format!("bench-{workers}"));
    common.spec.lease = lease_secs(10);
    common.format = FormatChoice::Text;
    let summary = run_whole(common)?;
    let redis_cpu = redis_cpu_seconds(&server.url())? - cpu_before;
    Ok(BenchRow {
        corpus: name.to_string(),
        workers,
        files: summary.files,
        bytes: summary.bytes,
        wall_seconds: summary.wall_seconds,
        mb_per_second: summary.mb_per_second,
        words_per_second: summary.words as f64 / summary.wall_seconds.max(1e-9),
        commits: summary.commits,
        increments: summary.increments,
        redis_cpu_seconds: redis_cpu,
        redis_cpu_seconds_per_gb: redis_cpu / (summary.bytes as f64 / 1e9),
    })
}

/// used_cpu_user + used_cpu_sys of a server, from `INFO CPU`.
pub fn redis_cpu_seconds(url: &str) -> anyhow::Result<f64> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_connection()?;
    let info: String = redis::cmd("INFO").arg("CPU").query(&mut con)?;
    Ok(info
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| *k == "used_cpu_user" || *k == "used_cpu_sys")
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum())
}

/// Every word of `files` and its count, counted in this process: the independent count a bench
/// checks a design's result against.
pub(crate) fn word_counts(
    files: &[PathBuf],
) -> anyhow::Result<std::collections::HashMap<Vec<u8>, u64>> {
    let tokenizer = Tokenizer::whitespace();
    let mut counts = WordCounts::new();
    for f in files {
        let data = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        tokenizer.count(&data, &mut counts);
    }
    Ok(counts.iter().map(|(w, n)| (w.to_vec(), n)).collect())
}

/// Fails unless the `--out` file `out` holds exactly `oracle`.
pub(crate) fn check_counts(
    out: &Path,
    oracle: &std::collections::HashMap<Vec<u8>, u64>,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
    let mut got = std::collections::HashMap::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let tab = line
            .iter()
            .rposition(|&b| b == b'\t')
            .with_context(|| format!("{}: a line without a tab", out.display()))?;
        let n: u64 = std::str::from_utf8(&line[tab + 1..])?.parse()?;
        got.insert(line[..tab].to_vec(), n);
    }
    if &got != oracle {
        anyhow::bail!(
            "{}: the job's counts differ from the in-process count ({} words against {})",
            out.display(),
            got.len(),
            oracle.len()
        );
    }
    let _ = std::fs::remove_file(out);
    Ok(())
}

/// Pids of the `redcount worker` children of process `parent` (a pid, or "self").
pub(crate) fn worker_children(parent: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
        return pids;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.split(|&b| b == 0).any(|arg| arg == b"worker") {
                pids.push(pid);
            }
        }
    }
    pids
}

/// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`), if the process is there.
pub(crate) fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// The middle of `v` (the upper one of an even count); 0 when empty.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
