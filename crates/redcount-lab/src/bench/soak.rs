//! `redcount bench --soak`: a stream at a fixed rate for many minutes against its own Redis, sampling
//! every 10 s what would grow without bound if anything kept a record per file: Redis's
//! `used_memory` and the lengths of the job's `tasks` and `done` streams, the driver's and the
//! workers' resident sets. After the warm-up (the job's history filling, `--history`), each should
//! stay flat; the table ends with their growth per file over the run's last half.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redcount_server::{RedisServer, ServerOptions};

use super::{corpus_dir, proc_kb, source_text, worker_children, write_small, BenchOptions};

/// One sample.
struct Sample {
    at_s: f64,
    done: u64,
    redis_bytes: u64,
    tasks_len: u64,
    done_len: u64,
    driver_kb: u64,
    workers_kb: u64,
}

/// Runs the soak and prints its samples and growth rates.
pub fn bench_soak(options: &BenchOptions, minutes: f64, rate: f64) -> anyhow::Result<()> {
    let (_temp, dir) = corpus_dir(options)?;
    let text = source_text(&options.source)?;
    let corpus = dir.join("small");
    write_small(&corpus, &text, options.small_files)?;
    let redis = RedisServer::start(ServerOptions::default())?;
    let url = redis.url();
    let mut con = redis::Client::open(url.as_str())?.get_connection()?;
    let length = Duration::from_secs_f64(minutes * 60.0);
    let mut driver = Command::new(&options.worker_exe)
        .args([
            "stream",
            "--job",
            "soak",
            "--workers",
            "2",
            "--json",
            "--no-progress",
        ])
        .arg("--rate")
        .arg(rate.to_string())
        .arg("--duration")
        .arg(format!("{}ms", length.as_millis()))
        .arg("--latency-out")
        .arg(dir.join("soak-latency.csv"))
        .arg(&corpus)
        .env("REDIS_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the stream job")?;
    println!(
        "stream at {rate} files/s for {minutes} min, {} files of 1-30 kB, 2 workers, own Redis",
        options.small_files
    );
    println!(
        "{:>6} {:>9} {:>11} {:>9} {:>9} {:>10} {:>11}",
        "t s", "files", "redis MB", "tasks", "done", "driver MB", "workers MB"
    );
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = Duration::from_secs(10);
    while driver.try_wait()?.is_none() {
        std::thread::sleep(Duration::from_millis(200));
        if start.elapsed() < next {
            continue;
        }
        next += Duration::from_secs(10);
        let info: String = redis::cmd("INFO").arg("memory").query(&mut con)?;
        let redis_bytes = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let xlen = |con: &mut redis::Connection, key: &str| -> u64 {
            redis::cmd("XLEN").arg(key).query(con).unwrap_or(0)
        };
        let done: Option<u64> = redis::cmd("HGET")
            .arg("rc:{soak}:meta")
            .arg("done")
            .query(&mut con)?;
        let pid = driver.id().to_string();
        let sample = Sample {
            at_s: start.elapsed().as_secs_f64(),
            done: done.unwrap_or(0),
            redis_bytes,
            tasks_len: xlen(&mut con, "rc:{soak}:tasks"),
            done_len: xlen(&mut con, "rc:{soak}:done"),
            driver_kb: proc_kb(driver.id(), "VmRSS").unwrap_or(0),
            workers_kb: worker_children(&pid)
                .into_iter()
                .filter_map(|w| proc_kb(w, "VmRSS"))
                .sum(),
        };
        println!(
            "{:>6.0} {:>9} {:>11.2} {:>9} {:>9} {:>10.1} {:>11.1}",
            sample.at_s,
            sample.done,
            sample.redis_bytes as f64 / 1e6,
            sample.tasks_len,
            sample.done_len,
            sample.driver_kb as f64 / 1e3,
            sample.workers_kb as f64 / 1e3
        );
        samples.push(sample);
    }
    let output = driver.wait_with_output()?;
    if !output.status.success() {
        bail!("the stream job failed ({})", output.status);
    }
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
        .context("the stream job's --json summary is not JSON")?;
    let latency = &summary["latency"];
    println!(
        "{} files committed; latency p50 {} ms, p99 {} ms, max {} ms",
        latency["count"], latency["p50"], latency["p99"], latency["max"]
    );
    print_growth(&samples, length.as_secs_f64());
    check_latency_file(&dir.join("soak-latency.csv"), latency["count"].as_u64())
}

/// Growth per committed file from the first sample with the job's history full (the `done` stream
/// as long as it ends) to the last one taken while files were injected; from the middle sample when
/// the history never filled.
fn print_growth(samples: &[Sample], injecting_s: f64) {
    // The last sample taken while files were injected (the workers leave when the job ends).
    let Some(last) = samples.iter().rev().find(|s| s.at_s < injecting_s - 1.0) else {
        println!("too short to measure growth");
        return;
    };
    let full = samples
        .iter()
        .position(|s| s.done_len >= last.done_len && s.done_len > 0)
        .filter(|&i| samples[i].at_s < last.at_s)
        .unwrap_or(samples.len() / 2);
    let mid = &samples[full];
    let files = last.done.saturating_sub(mid.done).max(1) as f64;
    let per_file = |a: u64, b: u64| (b as f64 - a as f64) / files;
    println!(
        "growth per file from t={:.0}s to t={:.0}s ({} files): redis {:+.1} B, driver {:+.1} B, \
         workers {:+.1} B",
        mid.at_s,
        last.at_s,
        files,
        per_file(mid.redis_bytes, last.redis_bytes),
        per_file(mid.driver_kb * 1000, last.driver_kb * 1000),
        per_file(mid.workers_kb * 1000, last.workers_kb * 1000),
    );
}

/// The latency CSV has a row per committed file, though Redis kept only the newest records.
fn check_latency_file(path: &Path, count: Option<u64>) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let rows = text.lines().count().saturating_sub(1) as u64;
    println!("latency CSV: {rows} rows (summary count {count:?})");
    Ok(())
}
