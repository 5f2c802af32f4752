//! `redcount bench --churn`: how long a job of many small files packed into large tasks takes when
//! its workers are SIGKILLed again and again, against the same job left alone. Issue 24's scenario:
//! a Redis of its own, a driver that only enqueues, three workers kept alive (each file costing
//! 25 ms of CPU, `--slow`), one SIGKILLed every 0.2-0.7 s (seeded) and replaced, 1 s leases,
//! 1,000 files of 20-32 kB. Every run's `--out` is checked word by word against an in-process
//! count, and nothing may be given up.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redcount_protocol::{Job, Link, LinkOptions, Now};
use redcount_server::{RedisServer, ServerOptions};

use super::{check_counts, corpus_dir, median, word_counts, BenchOptions};

/// Runs the job `runs` times with and without kills (interleaved) and prints the medians.
pub fn bench_churn(options: &BenchOptions, runs: usize) -> anyhow::Result<()> {
    let (_temp, dir) = corpus_dir(options)?;
    let corpus = dir.join("churn");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 1_000, 20_000, 32_000, 2424);
    let oracle = word_counts(&files)?;
    let (mut calm, mut storm, mut kills, mut splits) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let (wall, _, _) = one_run(options, &corpus, &dir, &oracle, None)?;
        calm.push(wall);
        let (wall, k, s) = one_run(options, &corpus, &dir, &oracle, Some(run as u64))?;
        storm.push(wall);
        kills.push(k as f64);
        splits.push(s as f64);
        eprintln!(
            "run {run}: calm {:.2} s, storm {wall:.2} s ({k} kills, {s} splits)",
            calm[run - 1]
        );
    }
    println!("1,000 files of 20-32 kB, 3 workers at 25 ms a file, 1 s leases; medians of {runs}");
    println!("| run | wall s | kills | tasks split |");
    println!("|---|---|---|---|");
    println!("| no kills | {:.2} | 0 | 0 |", median(calm.clone()));
    println!(
        "| a worker SIGKILLed every 0.2-0.7 s | {:.2} | {:.0} | {:.0} |",
        median(storm.clone()),
        median(kills),
        median(splits)
    );
    println!("storm / calm: {:.2}x", median(storm) / median(calm));
    Ok(())
}

/// One job; with `kill_seed`, workers are killed until it finishes. Returns (wall seconds, kills,
/// splits).
fn one_run(
    options: &BenchOptions,
    corpus: &Path,
    dir: &Path,
    oracle: &std::collections::HashMap<Vec<u8>, u64>,
    kill_seed: Option<u64>,
) -> anyhow::Result<(f64, u32, u64)> {
    let server = RedisServer::start(ServerOptions::default())?;
    let url = server.url();
    let out = dir.join("churn.tsv");
    let exe = &options.worker_exe;
    let started = Instant::now();
    let mut driver = Command::new(exe)
        .args([
            "run",
            "--workers",
            "0",
            "--job",
            "churn",
            "--lease",
            "1s",
            "--out",
        ])
        .arg(&out)
        .arg(corpus)
        .env("REDIS_URL", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting the driver")?;
    let worker = || -> anyhow::Result<Child> {
        Command::new(exe)
            .args([
                "worker",
                "--job",
                "churn",
                "--slow",
                "25ms",
                "--speculate-factor",
                "0",
            ])
            .env("REDIS_URL", &url)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a worker")
    };
    let mut workers = vec![worker()?, worker()?, worker()?];
    let mut kills = 0;
    let mut rng = redcount_testkit::Rng::new(kill_seed.unwrap_or(0));
    let finished = |started: Instant| -> anyhow::Result<bool> {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the job did not finish within 10 minutes");
        }
        driver_done(&url)
    };
    while !finished(started)? {
        match kill_seed {
            Some(_) => {
                std::thread::sleep(Duration::from_millis(rng.range(200, 700)));
                let victim = rng.range(0, 3) as usize;
                let _ = workers[victim].kill();
                let _ = workers[victim].wait();
                workers[victim] = worker()?;
                kills += 1;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    if !driver.wait()?.success() {
        bail!("the driver failed");
    }
    let wall = started.elapsed().as_secs_f64();
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    check_counts(&out, oracle)?;
    let mut job = Job::new(Link::open(&url, LinkOptions::default())?, "churn")?;
    let s = job.status(Now::Coordinator, redcount_protocol::READER_LIVE_WINDOW)?;
    if s.failed_inputs() > 0 {
        bail!("{} inputs were given up", s.failed_inputs());
    }
    Ok((wall, kills, s.splits))
}

/// True once the job exists and is finished.
fn driver_done(url: &str) -> anyhow::Result<bool> {
    let mut job = Job::new(Link::open(url, LinkOptions::default())?, "churn")?;
    match job.status(Now::Coordinator, redcount_protocol::READER_LIVE_WINDOW) {
        Ok(s) => Ok(s.finished),
        Err(redcount_protocol::Error::NoJob { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
