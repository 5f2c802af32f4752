//! Worker faults: SIGKILL random workers again and again, and a SIGSTOPped straggler whose lease
//! expires. Seeded, bounded in time, every process cleaned up; results compared with the oracle.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use redcount_protocol::{Job, Link, LinkOptions};

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).expect("signal a worker");
}

fn spawn_worker(url: &str, job: &str, extra: &[&str]) -> Child {
    redcount()
        .args(["worker", "--job", job, "--redis", url])
        .args(extra)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start worker")
}

fn start_driver(
    url: &str,
    job: &str,
    out: &std::path::Path,
    input: &std::path::Path,
    extra: &[&str],
) -> Child {
    redcount()
        .args([
            "run",
            "--workers",
            "0",
            "--job",
            job,
            "--redis",
            url,
            "--out",
        ])
        .arg(out)
        .args(extra)
        .arg(input)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start driver")
}

fn job_status(url: &str, job: &str) -> redcount_protocol::Status {
    try_status(url, job).expect("the job exists")
}

/// The job's status, or None while the driver has not created it yet.
fn try_status(url: &str, job: &str) -> Option<redcount_protocol::Status> {
    let mut j = Job::new(Link::open(url, LinkOptions::default()).expect("url"), job).expect("job");
    match j.status(
        redcount_protocol::now_ms(),
        std::time::Duration::from_secs(60),
    ) {
        Ok(s) => Some(s),
        Err(redcount_protocol::Error::NoJob { .. }) => None,
        Err(e) => panic!("status of {job}: {e}"),
    }
}

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
/// leases, 100 attempts and 16 KiB splits, plus `extra` flags.
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
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, files, 20_000, 80_000, seed);
    let out = dir.path().join("out.tsv");
    let mut args = vec![
        "--lease-ms",
        "1s",
        "--max-attempts",
        "100",
        "--split-bytes",
        "16KiB",
    ];
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

#[test]
fn killing_random_workers_repeatedly_loses_and_doubles_nothing() {
    let job = start_chaos_job("chaos", 40, 1234, &[]);
    let url = job.server.url();
    // Slow, small batches so that kills land before, during and after counting and committing.
    // No speculation: this test is about leases expiring.
    let worker_flags = [
        "--slow",
        "30ms",
        "--batch-bytes",
        "32KiB",
        "--speculate-factor",
        "0",
    ];
    let (_workers, kills) = kill_workers_repeatedly(
        &url,
        "chaos",
        &worker_flags,
        42,
        (100, 350),
        Duration::from_secs(6),
    );
    wait_success(job.driver, Duration::from_secs(90), "driver");
    assert_same_counts(&oracle_count(&job.files), &read_out_file(&job.out));
    let s = job_status(&url, "chaos");
    eprintln!("chaos: {kills} workers killed; {s:?}");
    assert!(kills >= 10, "the test killed {kills} workers");
    assert!(s.redelivered > 0, "kills hit workers holding tasks: {s:?}");
    assert_eq!((s.done, s.dead), (s.tasks, 0), "{s:?}");
}

#[test]
fn killing_workers_while_they_merge_loses_and_doubles_nothing() {
    let job = start_chaos_job("merging", 100, 99, &["--partitions", "4"]);
    let url = job.server.url();
    // Tiny commits and merges due at once: workers merge all the time, so kills land mid-merge too
    // (a merge whose worker dies is claimed again after its lease; one left half-done is stale).
    let worker_flags = [
        "--slow",
        "10ms",
        "--batch-bytes",
        "16KiB",
        "--merge-after",
        "0ms",
        "--speculate-factor",
        "0",
    ];
    let (_workers, kills) = kill_workers_repeatedly(
        &url,
        "merging",
        &worker_flags,
        7,
        (50, 250),
        Duration::from_secs(8),
    );
    wait_success(job.driver, Duration::from_secs(90), "driver");
    assert_same_counts(&oracle_count(&job.files), &read_out_file(&job.out));
    let s = job_status(&url, "merging");
    eprintln!("merging: {kills} workers killed; {s:?}");
    assert!(kills >= 15, "the test killed {kills} workers");
    assert!(s.merges >= 30, "workers merged throughout: {s:?}");
    assert_eq!((s.done, s.dead, s.partials), (s.tasks, 0, 0), "{s:?}");
}

#[test]
fn a_stopped_straggler_is_taken_over_and_its_late_commit_counts_once() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("one.txt");
    std::fs::write(
        &input,
        "the straggler and the fast worker count the same words\n".repeat(200),
    )
    .expect("write");
    let out = dir.path().join("out.tsv");
    let driver = start_driver(&url, "strag", &out, &input, &["--lease-ms", "1s"]);
    let mut workers = ChildGuard::default();
    workers.0.push(spawn_worker(
        &url,
        "strag",
        &["--name", "slow", "--slow", "3s"],
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while try_status(&url, "strag").is_none_or(|s| s.in_flight == 0) {
        assert!(
            Instant::now() < deadline,
            "the slow worker never claimed the task"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&workers.0[0], Signal::SIGSTOP);
    // The stopped worker renews nothing: its lease runs out, then a healthy worker takes the task.
    std::thread::sleep(Duration::from_millis(1_500));
    workers
        .0
        .push(spawn_worker(&url, "strag", &["--name", "fast"]));
    wait_success(driver, Duration::from_secs(60), "driver");
    signal(&workers.0[0], Signal::SIGCONT);
    let status = redcount_testkit::wait_with_timeout(
        &mut workers.0[0],
        Duration::from_secs(20),
        "straggler",
    );
    assert!(
        status.success(),
        "the straggler commits (a duplicate) and exits cleanly"
    );

    assert_same_counts(&oracle_count(&[&input]), &read_out_file(&out));
    let s = job_status(&url, "strag");
    assert_eq!((s.done, s.recomputed, s.duplicates), (1, 1, 1), "{s:?}");
    let mut job = Job::new(
        Link::open(&url, LinkOptions::default()).expect("url"),
        "strag",
    )
    .expect("job");
    let records = job.done_records().expect("done records");
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].worker.as_str(), records[0].attempts),
        ("fast", 2)
    );
}
