//! Worker faults: SIGKILL random workers again and again, and a SIGSTOPped straggler whose lease
//! expires. Seeded, bounded in time, every process cleaned up; results compared with the oracle.

#[path = "../common/mod.rs"]
mod common;
mod kills;
mod poison;

use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use redcount_protocol::{Job, Link, LinkOptions};

/// Three workers with `flags` on `job`; one of them SIGKILLed and replaced every `pause` ms (seeded)
/// until `window` has passed or the job is finished; then a healthy worker joins. Returns the kills.
fn kill_workers_repeatedly(
    url: &str,
    job: &str,
    flags: &[&str],
    seed: u64,
    pause: (u64, u64),
    window: Duration,
) -> (ChildGuard, u32) {
    let mut workers = ChildGuard::default();
    for _ in 0..3 {
        workers.0.push(spawn_worker(url, job, flags));
    }
    let mut rng = redcount_testkit::Rng::new(seed);
    let mut kills = 0;
    let chaos_until = Instant::now() + window;
    while Instant::now() < chaos_until && !try_status(url, job).is_some_and(|s| s.finished) {
        std::thread::sleep(Duration::from_millis(rng.range(pause.0, pause.1)));
        let victim = rng.range(0, workers.0.len() as u64) as usize;
        signal(&workers.0[victim], Signal::SIGKILL);
        let _ = workers.0[victim].wait();
        workers.0[victim] = spawn_worker(url, job, flags);
        kills += 1;
    }
    // Calm: a healthy worker helps finish the job.
    workers.0.push(spawn_worker(url, job, &[]));
    (workers, kills)
}

/// A driver (no workers of its own) counting `files` seeded text files on a fresh Redis with 1 s
/// leases and 16 KiB splits, plus `extra` flags.
struct ChaosJob {
    server: redcount_server::RedisServer,
    files: Vec<std::path::PathBuf>,
    out: std::path::PathBuf,
    driver: Child,
    _dir: tempfile::TempDir,
}

fn start_chaos_job(job: &str, files: usize, seed: u64, extra: &[&str]) -> ChaosJob {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    start_chaos_job_on(server, job, files, seed, extra)
}

/// [`start_chaos_job`] on `server`.
fn start_chaos_job_on(
    server: redcount_server::RedisServer,
    job: &str,
    files: usize,
    seed: u64,
    extra: &[&str],
) -> ChaosJob {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, files, 20_000, 80_000, seed);
    let out = dir.path().join("out.tsv");
    // The default 5 attempts: kills charge only a task its worker was counting alone.
    let mut args = vec!["--lease-ms", "1s", "--split-bytes", "16KiB"];
    args.extend_from_slice(extra);
    let driver = start_driver(&server.url(), job, &out, &corpus, &args);
    ChaosJob {
        server,
        files,
        out,
        driver,
        _dir: dir,
    }
}
