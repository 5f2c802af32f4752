//! Worker faults: SIGKILL random workers again and again, and a SIGSTOPped straggler whose lease
//! expires. Seeded, bounded in time, every process cleaned up; results compared with the oracle.

mod common;

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

#[test]
fn killing_random_workers_repeatedly_loses_and_doubles_nothing() {
    // On a Redis shared with others and earlier jobs, as users run it.
    let job = start_chaos_job_on(lived_in::lived_in_redis(), "chaos", 40, 1234, &[]);
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
    assert_eq!((s.done, s.dead), (s.to_settle(), 0), "{s:?}");
    lived_in::assert_left_as_it_was(&url);
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
    assert_eq!((s.done, s.dead, s.partials), (s.to_settle(), 0, 0), "{s:?}");
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

#[test]
fn forty_random_worker_kills_bury_no_good_file() {
    // One task per small file, batches of up to 1,024 claimed at once, the default 5 attempts: a
    // kill used to charge an attempt to every task of the victim's batch, and after ~30 kills good
    // files were given up. Only a task its worker was counting alone may be charged now.
    let job = start_chaos_job(
        "kills",
        1000,
        4321,
        &["--no-pack", "--speculate-factor", "0"],
    );
    let url = job.server.url();
    let worker_flags = ["--slow", "50ms", "--speculate-factor", "0"];
    let (_workers, kills) = kill_workers_repeatedly(
        &url,
        "kills",
        &worker_flags,
        2024,
        (150, 450),
        Duration::from_secs(14),
    );
    let out = wait_success(job.driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&job.files), &read_out_file(&job.out));
    let s = job_status(&url, "kills");
    eprintln!("kills: {kills} workers killed; {s:?}");
    assert!(kills >= 40, "the job ended after only {kills} kills");
    assert!(s.redelivered > 0, "kills hit workers holding tasks: {s:?}");
    assert_eq!(
        (s.done, s.dead),
        (s.to_settle(), 0),
        "a good file was given up: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Runs 2 workers over 40 small files and `poison.txt`, with `REDCOUNT_TEST_POISON=<how>:poison.txt`
/// making every worker that reads it crash or hang; returns the driver's output, the oracle's count
/// of the good files and the counts it wrote.
fn run_with_poison(how: &str) -> (std::process::Output, Counts, Counts) {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let good = redcount_testkit::corpus::write_text_corpus(&corpus, 40, 500, 3_000, 77);
    std::fs::write(corpus.join("poison.txt"), "this input kills workers\n").expect("write");
    let out = dir.path().join("out.tsv");
    let child = job()
        .workers(2)
        .arg("--no-pack")
        .lease("1s")
        .flag("--max-attempts", "3")
        .flag("--task-timeout", "1s")
        .flag("--speculate-factor", "0")
        .out(&out)
        .input(&corpus)
        .env("REDCOUNT_TEST_POISON", format!("{how}:poison.txt"))
        .spawn();
    let output = wait_output(child, Duration::from_secs(90), "run");
    (output, oracle_count(&good), read_out_file(&out))
}

fn assert_poison_buried(how: &str) {
    let (output, expected, counts) = run_with_poison(how);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "finished with a failed input: {stdout}\n{stderr}"
    );
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("failed:"))
        .collect();
    assert_eq!(failed.len(), 1, "only the poison input failed: {stdout}");
    assert!(
        failed[0].contains("poison.txt") && failed[0].contains("gave up after 3 attempts"),
        "{}",
        failed[0]
    );
    assert_same_counts(&expected, &counts);
}

#[test]
fn an_input_that_crashes_every_worker_is_given_up_alone() {
    assert_poison_buried("crash");
}

#[test]
fn an_input_that_hangs_every_worker_is_given_up_alone() {
    assert_poison_buried("hang");
}

#[test]
fn workers_with_clocks_30s_ahead_and_behind_take_nothing_from_each_other() {
    // Leases and latency stamps are on the coordinator's clock: a worker's own clock, here 30 s
    // ahead of or behind the others' (faketime), must not matter. It used to: the fast clock saw
    // every lease expired and re-ran hundreds of tasks held by healthy workers.
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 300, 500, 4_000, 303);
    let out = dir.path().join("out.tsv");
    let started_ms = redcount_protocol::now_ms();
    let driver = start_driver(
        &url,
        "skew",
        &out,
        &corpus,
        &["--lease", "2s", "--no-pack", "--speculate-factor", "0"],
    );
    let flags = ["--slow", "20ms", "--batch-tasks", "16"];
    let mut workers = ChildGuard::default();
    for (name, skew) in [
        ("plain-1", None),
        ("plain-2", None),
        ("ahead", Some("+30s")),
        ("behind", Some("-30s")),
    ] {
        let mut cmd = match skew {
            None => redcount(),
            Some(offset) => {
                let mut c = std::process::Command::new("faketime");
                c.args(["-f", offset, env!("CARGO_BIN_EXE_redcount")])
                    .env_remove("REDIS_URL")
                    .stdin(std::process::Stdio::null());
                c
            }
        };
        cmd.args(["worker", "--job", "skew", "--redis", &url, "--name", name])
            .args(flags)
            .stderr(std::process::Stdio::null());
        workers
            .0
            .push(cmd.spawn().expect("start worker (is faketime installed?)"));
    }
    wait_success(driver, Duration::from_secs(120), "driver");
    let finished_ms = redcount_protocol::now_ms();
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let s = job_status(&url, "skew");
    eprintln!("skew: {s:?}");
    assert_eq!(
        (s.redelivered, s.duplicates, s.recomputed),
        (0, 0, 0),
        "healthy workers lost tasks to a skewed clock: {s:?}"
    );
    let mut job = Job::new(
        Link::open(&url, LinkOptions::default()).expect("url"),
        "skew",
    )
    .expect("job");
    let records = job.done_records().expect("done records");
    for name in ["ahead", "behind"] {
        assert!(
            records.iter().any(|r| r.worker == name),
            "the {name} worker committed nothing"
        );
    }
    for r in &records {
        // One clock: the test's, the coordinator's (same host), within a second of slack.
        assert!(
            r.injected_ms <= r.claimed_ms && r.claimed_ms <= r.committed_ms,
            "stamps out of order: {r:?}"
        );
        assert!(
            r.injected_ms + 1_000 >= started_ms && r.committed_ms <= finished_ms + 1_000,
            "a stamp off the coordinator's clock: {r:?}"
        );
    }
}

/// Runs `run -w 2` over `corpus` with `REDCOUNT_TEST_POISON=<poison>` and `extra` flags; returns
/// the driver's output and the counts it wrote.
fn run_poisoned(
    corpus: &std::path::Path,
    poison: &str,
    extra: &[&str],
) -> (std::process::Output, Counts) {
    let out = corpus.with_extension("out.tsv");
    let child = job()
        .workers(2)
        .lease("1s")
        .flag("--task-timeout", "1s")
        .flag("--speculate-factor", "0")
        .json()
        .out(&out)
        .args(extra)
        .input(corpus)
        .env("REDCOUNT_TEST_POISON", poison)
        .spawn();
    let output = wait_output(child, Duration::from_secs(120), "run");
    (output, read_out_file(&out))
}

#[test]
fn a_poison_file_packed_with_500_good_ones_is_the_only_input_given_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let good = redcount_testkit::corpus::write_text_corpus(&corpus, 500, 500, 3_000, 78);
    std::fs::write(
        corpus.join("doc-00250-poison.txt"),
        "this input kills workers\n",
    )
    .expect("write");
    let (output, counts) = run_poisoned(
        &corpus,
        "crash:doc-00250-poison.txt",
        &["--max-attempts", "3"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let v = json(&output);
    assert_eq!(v["tasks"], 1, "the 501 files are packed into one task");
    let failed = v["failed"].as_array().expect("failed");
    assert_eq!(
        failed.len(),
        1,
        "exactly the poison file is named: {failed:?}"
    );
    assert!(failed[0]["path"]
        .as_str()
        .unwrap_or("")
        .ends_with("doc-00250-poison.txt"));
    assert!(failed[0]["error"]
        .as_str()
        .unwrap_or("")
        .contains("gave up after 3 attempts"));
    assert_same_counts(&oracle_count(&good), &counts);
}

#[test]
fn a_poison_range_in_a_large_split_file_loses_at_most_64_kib_named_by_offsets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    std::fs::create_dir_all(&corpus).expect("mkdir");
    let mut rng = redcount_testkit::Rng::new(91);
    let data = redcount_testkit::corpus::text(&mut rng, 20 << 20);
    let big = corpus.join("big.txt");
    std::fs::write(&big, &data).expect("write");
    let at: u64 = 10_000_000;
    let (output, counts) = run_poisoned(
        &corpus,
        &format!("crash:big.txt@{at}"),
        &["--max-attempts", "2", "--split-bytes", "4MiB"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let v = json(&output);
    let failed = v["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (start, end) = (
        failed[0]["start"].as_u64().expect("start"),
        failed[0]["end"].as_u64().expect("end"),
    );
    assert!(
        start <= at && at < end,
        "the range {start}..{end} holds the poison at {at}"
    );
    assert!(
        end - start <= 64 << 10,
        "only {} bytes may be lost",
        end - start
    );
    assert_eq!(v["bytes_not_counted"], end - start);
    // Everything else is counted: the file without that range (cut at whitespace, so no word is
    // split by leaving it out).
    let rest = dir.path().join("rest");
    std::fs::create_dir_all(&rest).expect("mkdir");
    std::fs::write(rest.join("before.txt"), &data[..start as usize]).expect("write");
    std::fs::write(rest.join("after.txt"), &data[end as usize..]).expect("write");
    assert_same_counts(
        &oracle_count(&[rest.join("before.txt"), rest.join("after.txt")]),
        &counts,
    );
}

#[test]
fn a_kill_storm_on_packed_tasks_shrinks_them_and_gives_nothing_up() {
    // Issue 24's scenario: an external Redis, a driver that only enqueues, three workers kept
    // alive with one SIGKILLed every 0.2-0.7 s and replaced, 1 s leases, every file costing 25 ms,
    // ~1,000 small files packed into bags that take longer than a worker lives.
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 1_000, 20_000, 32_000, 2424);
    let out = dir.path().join("out.tsv");
    let driver = start_driver(&url, "storm", &out, &corpus, &["--lease", "1s"]);
    let (_workers, kills) = kill_workers_repeatedly(
        &url,
        "storm",
        &["--slow", "25ms", "--speculate-factor", "0"],
        24,
        (200, 700),
        Duration::from_secs(60),
    );
    let output = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let s = job_status(&url, "storm");
    eprintln!("storm: {kills} kills; {s:?}");
    assert!(kills >= 40, "the job ended after only {kills} kills");
    assert!(s.tasks < 100, "files were packed: {} tasks", s.tasks);
    assert!(s.splits > 0, "churn split bags: {s:?}");
    assert_eq!(
        (s.dead, s.dead_records),
        (0, 0),
        "a good file was given up: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn a_lease_too_short_to_renew_is_refused_naming_the_floor() {
    for flag in ["0", "100ms"] {
        let out = job().lease(flag).input("corpus").output();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("at least 250 ms"), "{err}");
    }
}
