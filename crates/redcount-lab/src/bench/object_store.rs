//! `redcount bench --object-store`: the same corpora counted from local files and from objects in
//! S3-compatible servers on loopback (moto; s3s-fs and Garage when they are on PATH), side by side
//! in one run, runs interleaved, medians reported with the ratio to local files and the CPU the
//! workers and the store spent. Every run's counts are checked against an independent count.

use std::path::Path;

use anyhow::Context;
use redcount_testkit::s3::S3Server;

use super::{
    check_counts, median, run_whole, two_worker_job, word_counts, write_corpora, BenchOptions,
};

/// One source of one corpus, measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectStoreRow {
    /// Which corpus.
    pub corpus: String,
    /// Worker processes.
    pub workers: usize,
    /// `local files`, or the server the objects were read from.
    pub source: String,
    /// Input MB.
    pub mb: f64,
    /// Median wall time.
    pub wall_seconds: f64,
    /// MB per second at the median.
    pub mb_per_second: f64,
    /// Throughput relative to local files (1.0 = as fast).
    pub of_local: f64,
    /// CPU seconds of the run's child processes (the two workers and the private redis-server),
    /// median.
    pub workers_cpu_seconds: f64,
    /// CPU seconds the object store's server spent on the run, median (0 for local files).
    pub store_cpu_seconds: f64,
}

/// The bucket the corpora go into.
const BUCKET: &str = "redcount-bench";

/// Measures and prints a markdown table.
pub fn bench_object_store(
    options: &BenchOptions,
    runs: usize,
) -> anyhow::Result<Vec<ObjectStoreRow>> {
    let corpora = write_corpora(options)?;
    let mut servers: Vec<(&str, S3Server)> = vec![(
        "moto_server (Python)",
        S3Server::start().context("starting moto_server (scripts/test-venv.sh installs it)")?,
    )];
    let s3s_root = tempfile::Builder::new().prefix("redcount-s3s-").tempdir()?;
    match S3Server::start_s3s_fs(s3s_root.path()) {
        Ok(server) => servers.push(("s3s-fs (Rust)", server)),
        Err(err) => eprintln!("not measuring s3s-fs: {err}"),
    }
    let garage_dir = tempfile::Builder::new()
        .prefix("redcount-garage-")
        .tempdir()?;
    match S3Server::start_garage(garage_dir.path()) {
        Ok(server) => servers.push(("Garage (Rust)", server)),
        Err(err) => eprintln!("not measuring Garage: {err}"),
    }
    for (_, server) in &servers {
        server.create_bucket(BUCKET)?;
        for (prefix, dir) in [("small", &corpora.small), ("large", &corpora.large)] {
            server
                .upload_dir(BUCKET, prefix, dir)
                .with_context(|| format!("uploading {}", dir.display()))?;
        }
    }
    println!(
        "| corpus | workers | source | MB | wall s (median of {runs}) | MB/s | of local | workers + Redis CPU s | store CPU s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (corpus, prefix, dir) in [
        ("small files", "small", &corpora.small),
        ("large files", "large", &corpora.large),
    ] {
        let files = redcount_input::expand::expand(&[dir.display().to_string()])?;
        let expected = word_counts(&files)?;
        for &workers in &options.workers {
            let sources = Sources {
                local: dir,
                prefix,
                servers: &servers,
            };
            for row in measure(options, &sources, workers, runs, &expected)? {
                let row = ObjectStoreRow {
                    corpus: corpus.to_string(),
                    ..row
                };
                println!(
                    "| {} | {} | {} | {:.1} | {:.3} | {:.1} | {:.2} | {:.2} | {:.2} |",
                    row.corpus,
                    row.workers,
                    row.source,
                    row.mb,
                    row.wall_seconds,
                    row.mb_per_second,
                    row.of_local,
                    row.workers_cpu_seconds,
                    row.store_cpu_seconds
                );
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// One corpus: as local files, and as objects under `prefix` in each server.
struct Sources<'a> {
    local: &'a Path,
    prefix: &'a str,
    servers: &'a [(&'a str, S3Server)],
}

/// `runs` rounds of one job per source with `workers` workers, interleaved (round i of every
/// source, then round i + 1, so drift hits all alike); one row per source, medians.
fn measure(
    options: &BenchOptions,
    sources: &Sources<'_>,
    workers: usize,
    runs: usize,
    expected: &std::collections::HashMap<Vec<u8>, u64>,
) -> anyhow::Result<Vec<ObjectStoreRow>> {
    // Per source: (wall, children's CPU, store's CPU) of each run.
    let mut measured: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); sources.servers.len() + 1];
    let mut mb = 0.0;
    for _ in 0..runs {
        for (i, runs) in measured.iter_mut().enumerate() {
            let (input, env, store) = match i {
                0 => (sources.local.display().to_string(), Vec::new(), None),
                _ => {
                    let server = &sources.servers[i - 1].1;
                    let url = format!("s3://{BUCKET}/{}", sources.prefix);
                    (url, server.env(), Some(server.pid()))
                }
            };
            let (children, store_cpu) = (children_cpu_seconds(), store.map(cpu_seconds));
            let (wall, bytes) = timed_run(options, &input, workers, &env, expected)?;
            let store_cpu = match (store, store_cpu) {
                (Some(pid), Some(before)) => cpu_seconds(pid) - before,
                _ => 0.0,
            };
            runs.push((wall, children_cpu_seconds() - children, store_cpu));
            mb = bytes as f64 / 1e6;
        }
    }
    let column = |runs: &[(f64, f64, f64)], pick: fn(&(f64, f64, f64)) -> f64| {
        median(runs.iter().map(pick).collect())
    };
    let local = column(&measured[0], |r| r.0);
    Ok(measured
        .iter()
        .enumerate()
        .map(|(i, runs)| {
            let wall = column(runs, |r| r.0);
            ObjectStoreRow {
                corpus: String::new(),
                workers,
                source: match i {
                    0 => "local files".to_string(),
                    _ => sources.servers[i - 1].0.to_string(),
                },
                mb,
                wall_seconds: wall,
                mb_per_second: mb / wall.max(1e-9),
                of_local: local / wall.max(1e-9),
                workers_cpu_seconds: column(runs, |r| r.1),
                store_cpu_seconds: column(runs, |r| r.2),
            }
        })
        .collect())
}

/// CPU seconds (user + system) of process `pid` so far; 0 when it cannot be read.
fn cpu_seconds(pid: u32) -> f64 {
    stat_ticks(&format!("/proc/{pid}/stat"), 11, 12)
}

/// CPU seconds of this process's children that have been waited for (the workers and private
/// redis-servers of the runs so far).
fn children_cpu_seconds() -> f64 {
    stat_ticks("/proc/self/stat", 13, 14)
}

/// The sum of two clock-tick fields of a /proc stat line (counted after the command name), in
/// seconds (Linux reports 100 ticks a second to user space).
fn stat_ticks(path: &str, a: usize, b: usize) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(a) + tick(b)) / 100.0
}

/// One job over `input` with `workers` workers and the store's variables in the environment the
/// workers inherit; checks every count. Returns (wall seconds, bytes).
fn timed_run(
    options: &BenchOptions,
    input: &str,
    workers: usize,
    env: &[(&'static str, String)],
    expected: &std::collections::HashMap<Vec<u8>, u64>,
) -> anyhow::Result<(f64, u64)> {
    for (key, value) in env {
        std::env::set_var(key, value);
    }
    let out = tempfile::NamedTempFile::new()?;
    let mut job = two_worker_job(options, Path::new(input), super::lease_secs(10));
    job.workers = workers;
    job.out = Some(out.path().to_path_buf());
    let summary = run_whole(job);
    for (key, _) in env {
        std::env::remove_var(key);
    }
    let summary = summary?;
    anyhow::ensure!(
        summary.inputs_failed == 0,
        "{input}: {} inputs failed",
        summary.inputs_failed
    );
    check_counts(out.path(), expected).with_context(|| format!("counting {input}"))?;
    Ok((summary.wall_seconds, summary.bytes))
}
