//! `redcount bench --aggregation`: where counts are added up, measured side by side on the shapes that
//! stress a coordinator: ~1,000 small files with a rich vocabulary, two large files, 50,000 tiny
//! files, and one file of millions of distinct ids. For each: the same count done in one process with
//! two threads writing every word (the floor), then the real job with 2 workers, partials merged by
//! workers against ZINCRBY in Redis: wall time, Redis CPU-seconds per GB (`INFO CPU`), the longest call
//! Redis ran (`SLOWLOG`, calls over 1 ms), Redis's peak memory and the largest worker RSS. Then the
//! coordinator's capacity (pre-counted commits replayed by many clients) and a stream at a fixed rate.
//! Medians of `runs` runs; every number printed as a markdown table for docs/BENCHMARKS.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use redcount_count::{partial, Tokenizer, WordCounts};
use redcount_driver::stream::{stream, StreamLimit, StreamOptions, STREAM_BATCH_TIME};
use redcount_driver::JobOptions;
use redcount_input::FormatChoice;
use redcount_protocol::{
    Aggregation, ClaimRequest, Format, Job, JobSpec, Link, LinkOptions, NewTask, Now,
};
use redcount_server::{RedisServer, ServerOptions};

use super::{
    corpus_dir, median, proc_kb, redis_cpu_seconds, run_whole, source_text, worker_children,
    write_large, BenchOptions,
};

/// Runs the whole comparison and prints its tables.
pub fn bench_aggregation(options: &BenchOptions, runs: usize) -> anyhow::Result<()> {
    let (_temp, dir) = corpus_dir(options)?;
    let text = source_text(&options.source)?;
    let rich = dir.join("rich");
    let large = dir.join("large");
    let tiny = dir.join("tiny");
    let ids = dir.join("ids");
    eprintln!("bench: writing corpora in {}", dir.display());
    write_rich(&rich, &text, options.small_files, 7)?;
    write_large(&large, &text, options.large_mb * 1_000_000)?;
    write_tiny(&tiny, &text, 50_000, 11, 60, 80)?;
    write_ids(&ids, 4_000_000, 2_200_000, 13)?;

    println!("| corpus | MB | distinct words | aggregation | wall s | x in-process | Redis CPU s/GB | longest call ms | Redis peak MB | worker max RSS MB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, path) in [
        ("~1,000 small files, rich vocabulary", &rich),
        ("2 large files", &large),
        ("50,000 files of ~100 bytes", &tiny),
        ("1 file of 2.2 M distinct ids", &ids),
    ] {
        let floor = median(
            (0..runs)
                .map(|_| in_process_count(path))
                .collect::<anyhow::Result<Vec<_>>>()?,
        );
        println!("| {name} | | | in-process, 2 threads, every word written | {floor:.3} | 1.00 | | | | |");
        for aggregation in [Aggregation::Workers, Aggregation::Redis] {
            // ZINCRBY of millions of distinct words takes minutes of Redis and blocks it for seconds
            // per call: measured once.
            let n = if aggregation == Aggregation::Redis && path == &ids {
                1
            } else {
                runs
            };
            let mut results = Vec::new();
            for _ in 0..n {
                match measure(path, aggregation, &options.worker_exe) {
                    Ok(m) => results.push(m),
                    // ZINCRBY of millions of words can make Redis answer BUSY until every worker gives
                    // up: that is a result too.
                    Err(err) => println!(
                        "| {name} | | | {} | failed: {err:#} | | | | | |",
                        aggregation.as_str()
                    ),
                }
            }
            if results.is_empty() {
                continue;
            }
            results.sort_by(|a, b| a.wall.total_cmp(&b.wall));
            let m = &results[results.len() / 2];
            println!(
                "| {name} | {:.1} | {} | {} | {:.3} | {:.2} | {:.3} | {:.1} | {:.0} | {:.0} |",
                m.bytes as f64 / 1e6,
                m.distinct,
                aggregation.as_str(),
                m.wall,
                m.wall / floor,
                m.redis_cpu / (m.bytes as f64 / 1e9),
                m.longest_call_ms,
                m.redis_peak_mb,
                m.worker_rss_mb
            );
        }
    }
    println!();
    capacity(&rich)?;
    println!();
    stream_latency(&rich, &options.worker_exe, 1000.0, Duration::from_secs(10))?;
    Ok(())
}

/// One measured job.
pub(super) struct Measured {
    pub(super) bytes: u64,
    pub(super) distinct: u64,
    pub(super) wall: f64,
    pub(super) redis_cpu: f64,
    pub(super) longest_call_ms: f64,
    pub(super) redis_peak_mb: f64,
    pub(super) worker_rss_mb: f64,
}

pub(super) fn measure(
    path: &Path,
    aggregation: Aggregation,
    exe: &Path,
) -> anyhow::Result<Measured> {
    let server = RedisServer::start(ServerOptions {
        dir: None,
        config: vec![
            "slowlog-log-slower-than 1000".into(),
            "slowlog-max-len 100000".into(),
        ],
    })?;
    let url = server.url();
    let cpu_before = redis_cpu_seconds(&url)?;
    let mut common = JobOptions::new(vec![path.display().to_string()], 2, exe.to_path_buf());
    common.redis = Some(url.clone());
    common.format = FormatChoice::Text;
    common.spec.lease =
        redcount_protocol::Lease::new(Duration::from_secs(30)).map_err(anyhow::Error::msg)?;
    common.spec.aggregation = aggregation;
    common.out = Some(path.with_extension("out.tsv"));
    let rss = WorkerRss::watch();
    let summary = run_whole(common)?;
    let worker_rss_mb = rss.peak_mb();
    let redis_cpu = redis_cpu_seconds(&url)? - cpu_before;
    let mut con = redis::Client::open(url.as_str())?.get_connection()?;
    let slow: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query(&mut con)?;
    let longest_us = slow
        .iter()
        .filter_map(|entry| match entry {
            redis::Value::Array(fields) => fields.get(2).and_then(|d| match d {
                redis::Value::Int(us) => Some(*us),
                _ => None,
            }),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let memory: String = redis::cmd("INFO").arg("memory").query(&mut con)?;
    let peak = memory
        .lines()
        .find_map(|l| l.strip_prefix("used_memory_peak:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let _ = std::fs::remove_file(path.with_extension("out.tsv"));
    Ok(Measured {
        bytes: summary.bytes,
        distinct: summary.distinct_words,
        wall: summary.wall_seconds,
        redis_cpu,
        longest_call_ms: longest_us as f64 / 1000.0,
        redis_peak_mb: peak / 1e6,
        worker_rss_mb,
    })
}

/// The peak resident set (VmHWM) of the `redcount worker` children of this process while a job runs,
/// sampled every 20 ms from /proc (a worker that lives less than that may be missed).
struct WorkerRss {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl WorkerRss {
    fn watch() -> WorkerRss {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak_kb = 0;
            while !flag.load(Ordering::Relaxed) {
                for pid in worker_children("self") {
                    peak_kb = peak_kb.max(proc_kb(pid, "VmHWM").unwrap_or(0));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak_kb
        });
        WorkerRss { stop, thread }
    }

    fn peak_mb(self) -> f64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0) as f64 / 1000.0
    }
}

/// The floor: read and count every file in this process with two threads, then write every word
/// sorted, as `--out` does. Returns seconds.
pub(super) fn in_process_count(dir: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let files = redcount_input::expand::expand(&[dir.display().to_string()])?;
    let half = files.len().div_ceil(2);
    let (a, b) = files.split_at(half.min(files.len()));
    let count = |files: &[PathBuf]| -> anyhow::Result<WordCounts> {
        let tokenizer = Tokenizer::whitespace();
        let mut counts = WordCounts::new();
        for f in files {
            let data = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            tokenizer.count(&data, &mut counts);
        }
        Ok(counts)
    };
    let (ca, cb) = std::thread::scope(|s| {
        let ta = s.spawn(|| count(a));
        let cb = count(b);
        (ta.join().unwrap_or_else(|_| Ok(WordCounts::new())), cb)
    });
    let mut counts = ca?;
    counts.merge(&cb?);
    let mut all: Vec<(Vec<u8>, u64)> = counts.iter().map(|(w, n)| (w.to_vec(), n)).collect();
    partial::sort_by_count(&mut all);
    let out = dir.with_extension("floor.tsv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for (w, n) in &all {
        f.write_all(w)?;
        writeln!(f, "\t{n}")?;
    }
    f.flush()?;
    drop(f);
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(out);
    Ok(seconds)
}

/// Many clients replaying pre-counted commits (claim one batch of 16 tasks, commit its partial
/// blobs) against one Redis as fast as it accepts them: commits/s, Redis CPU per commit, and the input
/// one Redis core could coordinate at that cost.
fn capacity(rich: &Path) -> anyhow::Result<()> {
    const CLIENTS: usize = 8;
    const BATCH: usize = 16;
    const TASKS: u64 = 16_000;
    // A real batch: 16 files of the rich corpus, counted and split as a worker does.
    let files = redcount_input::expand::expand(&[rich.display().to_string()])?;
    let tokenizer = Tokenizer::whitespace();
    let mut counts = WordCounts::new();
    let mut batch_bytes = 0u64;
    for f in files.iter().take(BATCH) {
        let data = std::fs::read(f)?;
        batch_bytes += data.len() as u64;
        tokenizer.count(&data, &mut counts);
    }
    let blobs = partial::partition_blobs(counts.iter(), 16);
    let blob_bytes: usize = blobs.iter().map(|(_, b)| b.len()).sum();
    let server = RedisServer::start(ServerOptions::default())?;
    let url = server.url();
    let mut job = Job::new(Link::open(&url, LinkOptions::default())?, "capacity")?;
    job.create(Now::Coordinator, "capacity", &JobSpec::default())?;
    let per_task = batch_bytes / BATCH as u64;
    let tasks: Vec<NewTask> = (1..=TASKS)
        .map(|seq| NewTask {
            seq,
            path: format!("/capacity/{seq}").into(),
            start: 0,
            end: per_task,
            format: Format::Text,
            version: None,
            more: Vec::new(),
            due_ms: None,
        })
        .collect();
    for chunk in tasks.chunks(1000) {
        job.enqueue(Now::Coordinator, chunk)?;
    }
    job.seal(Now::Coordinator, TASKS)?;
    let cpu_before = redis_cpu_seconds(&url)?;
    let started = Instant::now();
    let commits: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (url, blobs) = (url.clone(), &blobs);
                s.spawn(move || -> anyhow::Result<u64> {
                    let mut job = Job::new(Link::open(&url, LinkOptions::default())?, "capacity")?;
                    let worker = format!("replay-{c}");
                    let mut commits = 0;
                    loop {
                        let request = ClaimRequest {
                            worker: &worker,
                            lease: Duration::from_secs(60),
                            max_tasks: BATCH as u64,
                            max_bytes: u64::MAX / 4,
                            max_attempts: 3,
                            live_window: Duration::from_secs(60),
                            speculate_factor: 0.0,
                            speculate_min: Duration::ZERO,
                        };
                        let claimed = job.claim(Now::Coordinator, &request)?;
                        if claimed.tasks.is_empty() {
                            return Ok(commits);
                        }
                        let ids: Vec<(String, u64)> =
                            claimed.tasks.iter().map(|t| (t.id.clone(), 1)).collect();
                        job.commit_parts(Now::Coordinator, &worker, &ids, blobs)?;
                        commits += 1;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Ok(0)))
            .sum::<anyhow::Result<u64>>()
    })?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = redis_cpu_seconds(&url)? - cpu_before;
    let input_per_commit = batch_bytes as f64;
    println!("| coordinator capacity | value |");
    println!("|---|---|");
    println!("| clients | {CLIENTS} |");
    println!("| commits (claim of {BATCH} tasks + commit of {} partition blobs, {blob_bytes} bytes) | {commits} |", blobs.len());
    println!("| commits/s | {:.0} |", commits as f64 / wall);
    println!(
        "| Redis CPU per commit (claim + commit) | {:.0} us |",
        cpu / commits as f64 * 1e6
    );
    println!(
        "| input per commit (the {BATCH} files counted) | {:.0} kB |",
        input_per_commit / 1e3
    );
    println!(
        "| Redis CPU-s per GB at this cost | {:.3} |",
        cpu / (commits as f64 * input_per_commit / 1e9)
    );
    println!(
        "| input one Redis core could coordinate | {:.2} GB/s |",
        commits as f64 * input_per_commit / 1e9 / cpu
    );
    Ok(())
}

/// A stream of the rich corpus's files at `rate` files/s for `duration`, 2 workers: latency.
fn stream_latency(rich: &Path, exe: &Path, rate: f64, duration: Duration) -> anyhow::Result<()> {
    let mut common = JobOptions::new(vec![rich.display().to_string()], 2, exe.to_path_buf());
    common.format = FormatChoice::Text;
    common.worker.batch_time = STREAM_BATCH_TIME;
    let options = StreamOptions {
        common,
        rate,
        batch: 10,
        limit: StreamLimit::Duration(duration),
        latency_out: None,
        plot: None,
        plot_log_y: false,
        faults: Default::default(),
    };
    let s = stream(&options, &AtomicBool::new(false))?;
    let l = &s.latency;
    println!("| stream | files | files/s committed | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {rate:.0} files/s of ~{:.0} kB files, 2 workers, {:.0} s | {} | {:.0} | {} | {} | {} | {} |",
        s.summary.bytes as f64 / s.injected_files.max(1) as f64 / 1e3,
        duration.as_secs_f64(),
        s.injected_files,
        s.files_per_second,
        l.p50,
        l.p90,
        l.p99,
        l.max
    );
    Ok(())
}

/// `n` files of 10-50 kB cut from the source text, with one word in eight replaced by a rarer token
/// drawn from 150,000 (seeded), so a file's vocabulary is like prose or tweets with names and tags.
pub(super) fn write_rich(dir: &Path, text: &[u8], n: usize, seed: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let words: Vec<&[u8]> = text
        .split(|b| redcount_count::is_space(*b))
        .filter(|w| !w.is_empty())
        .collect();
    let mut rng = Rng(seed);
    let mut at = 0usize;
    for i in 0..n {
        let size = 10_000 + (rng.next() % 40_000) as usize;
        let mut out = Vec::with_capacity(size + 64);
        while out.len() < size {
            if rng.next().is_multiple_of(8) {
                // Skewed: small ids are far more common than large ones.
                let r = rng.next() % 150_000;
                let id = r * r / 150_000;
                out.extend_from_slice(format!("tag{id}").as_bytes());
            } else {
                out.extend_from_slice(words[at % words.len()]);
                at += 1;
            }
            out.push(if rng.next().is_multiple_of(12) {
                b'\n'
            } else {
                b' '
            });
        }
        std::fs::write(dir.join(format!("doc-{i:05}.txt")), out)?;
    }
    Ok(())
}

/// `n` files of `min` to `min + spread` bytes (and to the end of a word) from the source text,
/// 1,000 to a directory.
pub(super) fn write_tiny(
    dir: &Path,
    text: &[u8],
    n: usize,
    seed: u64,
    min: usize,
    spread: u64,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng(seed);
    let mut pos = 0usize;
    for i in 0..n {
        let size = min + (rng.next() % spread) as usize;
        if pos + size + 64 >= text.len() {
            pos = 0;
        }
        let mut end = pos + size;
        while end < text.len() && !redcount_count::is_space(text[end]) {
            end += 1;
        }
        let sub = dir.join(format!("{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&sub)?;
        }
        std::fs::write(sub.join(format!("t-{i:05}.txt")), &text[pos..end])?;
        pos = end;
    }
    Ok(())
}

/// One file of `tokens` ids drawn from `distinct` (the shape of "count by user id").
pub(super) fn write_ids(dir: &Path, tokens: u64, distinct: u64, seed: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("ids.txt"))?);
    for i in 0..tokens {
        let id = rng.next() % distinct;
        write!(f, "u{id:07x}{}", if i % 16 == 15 { '\n' } else { ' ' })?;
    }
    f.flush()?;
    Ok(())
}

/// xorshift64: a fixed seed gives the same corpus everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
