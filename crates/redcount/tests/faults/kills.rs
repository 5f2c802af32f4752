//! Workers killed again and again (while counting, while merging, in storms on packed tasks), a SIGSTOPped straggler, clocks 30 s apart, and the shortest lease refused: exact, nothing lost or doubled.

use super::*;

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
