//! `redcount bench --instant`: what a job costs beyond its counting. A one-file job's wall time
//! with an external Redis and with the private one (the fixed cost: process starts, round trips,
//! and any wait on a timer), then jobs of many small inputs against the in-process 2-thread count
//! of the same files: ~1,000 small files with a rich vocabulary, and `--tiny-files` files of
//! ~140 bytes in directories of 1,000, with the time to the first commit and the driver's peak RSS.
//! Every job's `--out` is checked word by word against an in-process count.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redcount_protocol::{now_ms, Job, Link, LinkOptions};
use redcount_server::{RedisServer, ServerOptions};

use super::aggregation::{in_process_count, write_rich, write_tiny};
use super::hosts::dir_bytes;
use super::kernel::timed_run;
use super::{check_counts, corpus_dir, median, source_text, word_counts, BenchOptions};

/// Runs every measurement and prints them as markdown tables.
pub fn bench_instant(options: &BenchOptions, runs: usize, tiny_files: usize) -> anyhow::Result<()> {
    let (_temp, dir) = corpus_dir(options)?;
    let exe = &options.worker_exe;
    let server = RedisServer::start(ServerOptions::default())?;
    let url = server.url();

    let one = dir.join("one.txt");
    std::fs::write(&one, "hello world\n")?;
    let one_runs = runs.max(10);
    println!("| one-file job (12 bytes), 2 workers | median ms of {one_runs} | min ms | max ms |");
    println!("|---|---|---|---|");
    for (name, redis) in [
        ("external Redis", Some(url.as_str())),
        ("private Redis", None),
    ] {
        let mut walls = Vec::new();
        for i in 0..one_runs + 2 {
            let wall = run_quiet(exe, redis, &one, &format!("instant-one-{i}"))?;
            // Two warm-up runs.
            if i >= 2 {
                walls.push(wall * 1000.0);
            }
        }
        let (min, max) = walls
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), w| (a.min(*w), b.max(*w)));
        println!("| {name} | {:.1} | {min:.1} | {max:.1} |", median(walls));
    }
    println!();

    let text = source_text(&options.source)?;
    let rich = dir.join("rich");
    let tiny = dir.join("tiny");
    eprintln!("bench: writing corpora in {}", dir.display());
    write_rich(&rich, &text, options.small_files, 7)?;
    write_tiny(&tiny, &text, tiny_files, 11, 80, 120)?;
    println!("| corpus | MB | in-process 2 threads s | job s (external Redis, 2 workers, --out) | job / in-process | first commit after s | largest process peak RSS MB |");
    println!("|---|---|---|---|---|---|---|");
    let corpora = [
        (
            format!("{} small files, rich vocabulary", options.small_files),
            &rich,
        ),
        (format!("{tiny_files} files of ~140 bytes"), &tiny),
    ];
    for (corpus, (name, path)) in corpora.into_iter().enumerate() {
        let mb = dir_bytes(path)? as f64 / 1e6;
        let files = redcount_input::expand::expand(&[path.display().to_string()])?;
        let expected = word_counts(&files)?;
        let mut floors = Vec::new();
        let mut walls = Vec::new();
        let mut firsts = Vec::new();
        let mut rss = Vec::new();
        for run in 0..runs {
            floors.push(in_process_count(path)?);
            let out = dir.join("instant-out.tsv");
            let job = format!("instant-{corpus}-{run}");
            let started_ms = now_ms();
            let (wall, peak) = timed_run(exe, &url, path, &[], &out, &job)?;
            check_counts(&out, &expected).with_context(|| name.clone())?;
            walls.push(wall);
            rss.push(peak);
            firsts.push(first_commit_after(&url, &job, started_ms)?);
        }
        let (floor, wall) = (median(floors), median(walls));
        println!(
            "| {name} | {mb:.1} | {floor:.3} | {wall:.3} | {:.2} | {:.3} | {:.0} |",
            wall / floor,
            median(firsts),
            median(rss)
        );
    }
    Ok(())
}

/// One `run` of the one-file job, output discarded; wall seconds from spawn to exit.
fn run_quiet(exe: &Path, redis: Option<&str>, input: &Path, job: &str) -> anyhow::Result<f64> {
    let mut command = Command::new(exe);
    command.args(["run", "--workers", "2", "--no-progress"]);
    match redis {
        Some(url) => {
            command
                .env("REDIS_URL", url)
                .arg("--job")
                .arg(format!("{job}-{}", std::process::id()));
        }
        None => {
            command.env_remove("REDIS_URL");
        }
    }
    let started = Instant::now();
    let output = command.arg(input).output().context("running redcount")?;
    let wall = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("run failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(wall)
}

/// Seconds from `started_ms` to the job's first commit (the coordinator's clock is this machine's).
fn first_commit_after(url: &str, job: &str, started_ms: u64) -> anyhow::Result<f64> {
    let name = format!("{job}-{}", std::process::id());
    let mut job = Job::new(Link::open(url, LinkOptions::default())?, &name)?;
    let (records, _) = job.commits_after(0, Duration::from_millis(1))?;
    let first = records
        .iter()
        .map(|(_, r)| r.committed_ms)
        .min()
        .context("the job has no commit record")?;
    Ok(first.saturating_sub(started_ms) as f64 / 1000.0)
}
