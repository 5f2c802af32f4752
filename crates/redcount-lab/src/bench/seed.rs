//! `redcount bench --seed`: redcount against the course's lab design it grew from (Python workers,
//! one file per task, one FCALL of ZINCRBYs per file: `seed/seed_wordcount.py`), side by side on the
//! ~1,000 small files with a rich vocabulary, 2 workers each, each on a fresh Redis. The seed's
//! sorted set is compared word by word with an in-process count, so the comparison is of two exact
//! results.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use redcount_protocol::Aggregation;
use redcount_server::{RedisServer, ServerOptions};

use super::aggregation::{measure, write_rich};
use super::{corpus_dir, median, redis_cpu_seconds, source_text, word_counts, BenchOptions};

const SEED_SCRIPT: &str = include_str!("../../seed/seed_wordcount.py");

/// Runs both designs `runs` times and prints the medians.
pub fn bench_seed(options: &BenchOptions, runs: usize, python: &Path) -> anyhow::Result<()> {
    let (_temp, dir) = corpus_dir(options)?;
    let text = source_text(&options.source)?;
    let rich = dir.join("rich");
    write_rich(&rich, &text, options.small_files, 7)?;
    let script = dir.join("seed_wordcount.py");
    std::fs::write(&script, SEED_SCRIPT)?;
    let files = redcount_input::expand::expand(&[rich.display().to_string()])?;
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let oracle = word_counts(&files)?;

    let (mut ours, mut seed) = (Vec::new(), Vec::new());
    let (mut ours_cpu, mut seed_cpu) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let m = measure(&rich, Aggregation::Workers, &options.worker_exe)?;
        ours.push(m.wall);
        ours_cpu.push(m.redis_cpu);
        let (wall, cpu) = run_seed(python, &script, &files, &oracle)?;
        seed.push(wall);
        seed_cpu.push(cpu);
        eprintln!(
            "run {run}: redcount {:.3} s, seed {wall:.3} s ({:.1}x)",
            m.wall,
            wall / m.wall
        );
    }
    let ratios: Vec<f64> = seed.iter().zip(&ours).map(|(s, o)| s / o).collect();
    let gb = bytes as f64 / 1e9;
    println!(
        "{} files, {:.1} MB, {} distinct words; 2 workers; medians of {runs}",
        files.len(),
        bytes as f64 / 1e6,
        oracle.len()
    );
    println!("| design | wall s | Redis CPU s/GB | seed / redcount |");
    println!("|---|---|---|---|");
    println!(
        "| seed: Python workers, one FCALL of ZINCRBYs per file | {:.3} | {:.1} | |",
        median(seed),
        median(seed_cpu) / gb
    );
    println!(
        "| redcount (default) | {:.3} | {:.2} | {:.1}x |",
        median(ours),
        median(ours_cpu) / gb,
        median(ratios)
    );
    Ok(())
}

/// One run of the seed's design on a fresh Redis: (wall seconds, Redis CPU seconds). Fails unless
/// its counts equal `oracle` word by word.
fn run_seed(
    python: &Path,
    script: &Path,
    files: &[std::path::PathBuf],
    oracle: &HashMap<Vec<u8>, u64>,
) -> anyhow::Result<(f64, f64)> {
    let server = RedisServer::start(ServerOptions::default())?;
    let url = server.url();
    let cpu_before = redis_cpu_seconds(&url)?;
    let seed = |args: &[&std::ffi::OsStr]| {
        Command::new(python)
            .arg(script)
            .args(args)
            .env("SEED_REDIS_URL", &url)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {} (is redis-py installed?)", python.display()))
    };
    let started = Instant::now();
    let mut client_args: Vec<&std::ffi::OsStr> = vec!["client".as_ref()];
    client_args.extend(files.iter().map(|f| f.as_os_str()));
    if !seed(&client_args)?.wait()?.success() {
        bail!("the seed's client failed");
    }
    let workers = [
        seed(&["worker".as_ref(), "w1".as_ref()])?,
        seed(&["worker".as_ref(), "w2".as_ref()])?,
    ];
    for mut w in workers {
        if !w.wait()?.success() {
            bail!("a seed worker failed");
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = redis_cpu_seconds(&url)? - cpu_before;
    let mut con = redis::Client::open(url.as_str())?.get_connection()?;
    let got: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
        .arg("seed:counts")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut con)?;
    let got: HashMap<Vec<u8>, u64> = got.into_iter().map(|(w, n)| (w, n as u64)).collect();
    if &got != oracle {
        bail!(
            "the seed's counts differ from the in-process count ({} words against {})",
            got.len(),
            oracle.len()
        );
    }
    Ok((wall, cpu))
}
