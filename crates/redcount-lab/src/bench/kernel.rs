//! `redcount bench --kernel`: the per-core counting loop, the new kernel against the loop it
//! replaced, side by side in one run; then whole jobs, this build against `--compare-exe`.
//!
//! The kernel is what a worker does to a batch of tasks it has read: tokenize, count, and build
//! the batch's partition blobs (16 partitions, batches of 16 MiB, the defaults). Corpora (seeded):
//! English-like text of 43 MB with ~32,000 distinct words (the shape of Ben Hoyt's countwords
//! benchmark), the large-file corpus (the sample corpus repeated), ~1,000 small files with a rich
//! vocabulary, and one file of 2.2 M distinct ids. Files are in memory: this measures the loop,
//! not the disk.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use redcount_count::reference::{self, ReferenceCounts};
use redcount_count::{partial, Tokenizer, TokenizerKind};
use redcount_server::{RedisServer, ServerOptions};

use super::aggregation::{write_ids, write_rich};
use super::{corpus_dir, median, source_text, write_large, BenchOptions};

/// A batch's budget, as a worker's default `batch_bytes`.
const BATCH_BYTES: usize = 16 << 20;
/// A job's default partitions.
const PARTITIONS: u32 = redcount_protocol::DEFAULT_PARTITIONS.get();

/// The rules measured: (name, tokenizer, lowercase, with a dictionary).
const RULES: [(&str, TokenizerKind, bool, bool); 4] = [
    ("default", TokenizerKind::Whitespace, false, false),
    ("--lowercase", TokenizerKind::Whitespace, true, false),
    ("--tokenizer letters", TokenizerKind::Letters, false, false),
    (
        "--dictionary (5,000 words)",
        TokenizerKind::Whitespace,
        false,
        true,
    ),
];

/// Builds the corpora, measures, prints markdown tables.
pub fn bench_kernel(options: &BenchOptions, runs: usize) -> anyhow::Result<()> {
    let (_temp, dir) = corpus_dir(options)?;
    let text = source_text(&options.source)?;
    eprintln!("bench: writing corpora in {}", dir.display());
    let english = dir.join("english");
    std::fs::create_dir_all(&english)?;
    let bible_like = english.join("english-43mb.txt");
    std::fs::write(
        &bible_like,
        redcount_testkit::corpus::english_like(2021, 43_000_000, 32_000),
    )?;
    let large = dir.join("large");
    write_large(&large, &text, options.large_mb.min(200) * 1_000_000)?;
    let rich = dir.join("rich");
    write_rich(&rich, &text, options.small_files, 7)?;
    let ids = dir.join("ids");
    write_ids(&ids, 4_000_000, 2_200_000, 13)?;

    println!("Kernel, one core: tokenize, count and build the partition blobs of 16 MiB batches; MB/s, median of {runs}");
    println!();
    println!("| corpus | MB | rule | old loop MB/s | new kernel MB/s | new / old |");
    println!("|---|---|---|---|---|---|");
    for (name, path) in [
        ("English-like, ~32,000 words", english.as_path()),
        ("large files (sample corpus repeated)", &large),
        ("~1,000 small files, rich vocabulary", &rich),
        ("1 file of 2.2 M distinct ids", &ids),
    ] {
        let files = read_all(path)?;
        let bytes: usize = files.iter().map(Vec::len).sum();
        let rules: &[_] = if path == ids.as_path() || path == rich.as_path() {
            &RULES[..1]
        } else {
            &RULES
        };
        for &(rule, kind, lowercase, with_dictionary) in rules {
            let dictionary = with_dictionary.then(|| most_common(&files, 5_000));
            let (mut old, mut new) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                old.push(time(|| {
                    old_loop(&files, kind, lowercase, dictionary.as_ref())
                }));
                new.push(time(|| {
                    new_kernel(&files, kind, lowercase, dictionary.clone())
                }));
            }
            let (old, new) = (median(old), median(new));
            let mbps = |s: f64| bytes as f64 / 1e6 / s;
            println!(
                "| {name} | {:.0} | {rule} | {:.0} | {:.0} | {:.2} |",
                bytes as f64 / 1e6,
                mbps(old),
                mbps(new),
                old / new
            );
        }
    }
    println!();
    end_to_end(options, &dir, &bible_like, runs)
}

/// Seconds `f` takes.
fn time(f: impl FnOnce() -> usize) -> f64 {
    let started = Instant::now();
    std::hint::black_box(f());
    started.elapsed().as_secs_f64()
}

/// The loop as it was: a hash map per batch, the blobs built from it.
fn old_loop(
    files: &[Vec<u8>],
    kind: TokenizerKind,
    lowercase: bool,
    dictionary: Option<&HashSet<Vec<u8>>>,
) -> usize {
    let mut blob_bytes = 0;
    let mut counts = ReferenceCounts::new();
    let mut batch = 0;
    let mut flush = |counts: &mut ReferenceCounts| {
        let blobs = partial::partition_blobs(counts.iter().map(|(w, n)| (&w[..], *n)), PARTITIONS);
        blob_bytes += blobs.iter().map(|(_, b)| b.len()).sum::<usize>();
        *counts = ReferenceCounts::new();
    };
    for f in files {
        reference::count(kind, lowercase, dictionary, f, &mut counts);
        batch += f.len();
        if batch >= BATCH_BYTES {
            flush(&mut counts);
            batch = 0;
        }
    }
    flush(&mut counts);
    blob_bytes
}

/// The kernel as a worker runs it: one table, cleared and reused between batches.
fn new_kernel(
    files: &[Vec<u8>],
    kind: TokenizerKind,
    lowercase: bool,
    dictionary: Option<HashSet<Vec<u8>>>,
) -> usize {
    let tokenizer = Tokenizer::new(kind, lowercase, dictionary);
    let mut counts = tokenizer.new_counts();
    let mut blob_bytes = 0;
    let mut batch = 0;
    for f in files {
        tokenizer.count(f, &mut counts);
        batch += f.len();
        if batch >= BATCH_BYTES {
            blob_bytes += counts
                .partition_blobs(PARTITIONS)
                .iter()
                .map(|(_, b)| b.len())
                .sum::<usize>();
            counts.clear();
            batch = 0;
        }
    }
    blob_bytes
        + counts
            .partition_blobs(PARTITIONS)
            .iter()
            .map(|(_, b)| b.len())
            .sum::<usize>()
}

/// Every file under `dir`, in memory; large files cut into 16 MiB pieces at whitespace, as tasks.
fn read_all(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = redcount_input::expand::expand(&[dir.display().to_string()])?;
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let data = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        let mut at = 0;
        while at < data.len() {
            let mut end = (at + BATCH_BYTES).min(data.len());
            while end < data.len() && !redcount_count::is_space(data[end]) {
                end += 1;
            }
            out.push(data[at..end].to_vec());
            at = end;
        }
    }
    Ok(out)
}

/// The `n` most common words of `files` (the default rule): a dictionary that keeps most words.
fn most_common(files: &[Vec<u8>], n: usize) -> HashSet<Vec<u8>> {
    let mut counts = ReferenceCounts::new();
    for f in files {
        reference::count(TokenizerKind::Whitespace, false, None, f, &mut counts);
    }
    let mut all: Vec<(Vec<u8>, u64)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.into_iter().take(n).map(|(w, _)| w).collect()
}

/// Whole jobs: 1 GB of English-like text in 4 files, and the 43 MB file with `--lowercase`, each
/// with 2 workers on a Redis of its own started beforehand (an external Redis), `--out`; this
/// build and `--compare-exe` interleaved, and their outputs compared byte for byte.
fn end_to_end(
    options: &BenchOptions,
    dir: &Path,
    bible_like: &Path,
    runs: usize,
) -> anyhow::Result<()> {
    let gb = dir.join("english-1gb");
    std::fs::create_dir_all(&gb)?;
    for i in 0..4u64 {
        let path = gb.join(format!("part-{i}.txt"));
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) != 250_000_000 {
            std::fs::write(
                &path,
                redcount_testkit::corpus::english_like(100 + i, 250_000_000, 32_000),
            )?;
        }
    }
    let mut exes = vec![("this build", options.worker_exe.clone())];
    if let Some(old) = &options.compare_exe {
        exes.push(("--compare-exe", old.clone()));
    }
    let server = RedisServer::start(ServerOptions::default())?;
    println!("End to end: 2 workers, an external Redis (started before), --out; wall s and the largest process's peak RSS, median of {runs}");
    println!();
    println!("| job | build | wall s | peak RSS MB |");
    println!("|---|---|---|---|");
    for (key, job, input, extra) in [
        ("gb", "1 GB English-like, 4 files", gb.as_path(), &[][..]),
        (
            "lc",
            "43 MB English-like, --lowercase",
            bible_like,
            &["--lowercase"][..],
        ),
    ] {
        let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); exes.len()];
        let mut outputs: Vec<Vec<u8>> = vec![Vec::new(); exes.len()];
        for run in 0..runs {
            for (i, (_, exe)) in exes.iter().enumerate() {
                let out = dir.join(format!("e2e-{i}.tsv"));
                let name = format!("kernel-bench-{key}-{run}-{i}");
                let (wall, rss) = timed_run(exe, &server.url(), input, extra, &out, &name)?;
                results[i].0.push(wall);
                results[i].1.push(rss);
                outputs[i] = std::fs::read(&out)?;
            }
        }
        if outputs.iter().any(|o| *o != outputs[0]) {
            bail!("{job}: the builds' --out files differ");
        }
        for ((build, _), (walls, rss)) in exes.iter().zip(results) {
            println!(
                "| {job} | {build} | {:.3} | {:.0} |",
                median(walls),
                median(rss)
            );
        }
    }
    Ok(())
}

/// One `run` of `exe` under `/usr/bin/time` (wall seconds, peak RSS MB of its largest process).
pub(super) fn timed_run(
    exe: &Path,
    url: &str,
    input: &Path,
    extra: &[&str],
    out: &Path,
    job: &str,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(exe)
        .args(["run", "--workers", "2", "--no-progress", "--job"])
        .arg(format!("{job}-{}", std::process::id()))
        .args(extra)
        .arg("--out")
        .arg(out)
        .arg(input)
        .env("REDIS_URL", url)
        .output()
        .context("running /usr/bin/time (Debian package `time`)")?;
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("{} run failed: {stderr}", exe.display());
    }
    let rss_kb: f64 = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0.0);
    Ok((wall, rss_kb / 1024.0))
}
