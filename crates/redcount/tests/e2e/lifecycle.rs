//! A job's life around the count: signals, bad settings refused, old jobs pruned and removed.

use super::*;

#[test]
fn ctrl_c_stops_a_waiting_driver_with_130_and_its_private_redis_is_not_restarted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    redcount_testkit::corpus::write_text_corpus(&corpus, 3, 100, 500, 5);
    // No workers: the driver waits for some forever, until Ctrl-C.
    // Its own process group, as a shell gives a foreground job.
    let mut command = job().workers(0).input(&corpus).command();
    let child = std::os::unix::process::CommandExt::process_group(&mut command, 0)
        .spawn()
        .expect("start run");
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    // The terminal sends SIGINT to the whole foreground process group.
    let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(child.id() as i32)))
        .expect("process group");
    nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let out = wait_output(child, std::time::Duration::from_secs(20), "run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        !stderr.contains("restarting"),
        "the private Redis got the Ctrl-C too: {stderr}"
    );
}

#[test]
fn sync_replicas_without_replicas_is_refused_and_a_generated_job_name_is_printed() {
    let corpus = redcount_testkit::sample_corpus();
    let corpus = corpus.to_str().expect("utf-8");
    let out = job()
        .workers(1)
        .flag("--sync-replicas", "1")
        .input(corpus)
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a commit could never reach a replica: {stderr}"
    );
    assert!(
        stderr.contains("--sync-replicas 1") && stderr.contains("0 connected replica"),
        "{stderr}"
    );
    // The name is printed, so `status`/`top`/`counts` can find the job.
    let dir = tempfile::tempdir().expect("temp dir");
    let small = dir.path().join("in");
    redcount_testkit::corpus::write_text_corpus(&small, 2, 100, 300, 3);
    let out = job().workers(1).input(&small).succeed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("job wc-") && l.contains("on redis")),
        "{stderr}"
    );
}

#[test]
fn a_bad_stream_rate_is_a_command_line_error() {
    let corpus = redcount_testkit::sample_corpus();
    for rate in ["0", "-3", "inf", "fast"] {
        let flag = format!("--rate={rate}");
        let out = run(&["stream", &flag, corpus.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(2), "--rate {rate}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("positive number of files per second"),
            "{stderr}"
        );
    }
}

#[test]
fn finished_jobs_past_their_keep_are_pruned_and_nothing_else() {
    let server = redcount_server::RedisServer::start(Default::default()).expect("redis-server");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 3, 300, 2_000, 12);
    let c = corpus.to_str().expect("utf-8");
    let keys = |pattern: &str| sorted_keys(&url, pattern);
    let finished = |name: &str| job().workers(1).redis(&url).job(name).input(c);
    finished("kept").flag("--keep", "1s").succeed();
    finished("forever").succeed();
    // A running job (no worker ever joins) is never pruned, whatever its keep.
    let mut open = job()
        .workers(0)
        .redis(&url)
        .job("open")
        .flag("--keep", "1ms")
        .input(c)
        .command()
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start driver");
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let _ = open.kill();
    let _ = open.wait();
    let forever_before = keys("rc:{forever}:*");
    assert!(!keys("rc:{kept}:*").is_empty());

    let dry =
        String::from_utf8_lossy(&run_ok(&["jobs", "prune", "--dry-run", "--redis", &url]).stdout)
            .into_owned();
    assert!(
        dry.contains("would remove job kept ") && !dry.contains("forever"),
        "{dry}"
    );
    assert!(
        !keys("rc:{kept}:*").is_empty(),
        "a dry run removed something"
    );
    let pruned =
        String::from_utf8_lossy(&run_ok(&["jobs", "prune", "--redis", &url]).stdout).into_owned();
    assert!(
        pruned.contains("removed job kept ") && !pruned.contains("open"),
        "{pruned}"
    );
    assert!(keys("rc:{kept}:*").is_empty(), "kept's keys remain");
    assert_eq!(
        keys("rc:{forever}:*"),
        forever_before,
        "another job's keys were touched"
    );
    assert!(!keys("rc:{open}:*").is_empty(), "a running job was pruned");

    // A later job's driver removes what has expired meanwhile; no command needed.
    finished("short").flag("--keep", "300ms").succeed();
    std::thread::sleep(std::time::Duration::from_millis(500));
    finished("next").succeed();
    assert!(
        keys("rc:{short}:*").is_empty(),
        "the next driver left an expired job"
    );

    let out = dir.path().join("forever.tsv");
    let o = out.to_str().expect("utf-8");
    run_ok(&["counts", "--redis", &url, "--job", "forever", "--out", o]);
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    run_ok(&["jobs", "prune", "--older-than", "0s", "--redis", &url]);
    assert!(keys("rc:{forever}:*").is_empty() && keys("rc:{next}:*").is_empty());
    assert!(!keys("rc:{open}:*").is_empty(), "a running job was pruned");
}

#[test]
fn jobs_lists_the_jobs_and_rm_removes_exactly_one_jobs_keys() {
    let server = redcount_server::RedisServer::start(Default::default()).expect("redis-server");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 4, 300, 2_000, 11);
    let c = corpus.to_str().expect("utf-8");
    for name in ["a", "b"] {
        job().workers(1).redis(&url).job(name).input(c).succeed();
    }
    // A job left running: its driver is gone and no worker ever joined.
    let mut open = job()
        .workers(0)
        .redis(&url)
        .job("c")
        .input(c)
        .command()
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start driver");
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let _ = open.kill();
    let _ = open.wait();

    let listing = String::from_utf8_lossy(&run_ok(&["jobs", "--redis", &url]).stdout).into_owned();
    let row = |name: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {listing}"))
            .to_string()
    };
    assert!(
        row("a").contains("finished") && row("a").contains(" 1/1 "),
        "{listing}"
    );
    assert!(
        row("c").contains("running") && row("c").contains(" 0/1 "),
        "{listing}"
    );

    let keys = |pattern: &str| sorted_keys(&url, pattern);
    let b_before = keys("rc:{b}:*");
    let refused = run(&["jobs", "rm", "c", "--redis", &url]);
    assert!(!refused.status.success());
    // In the user's words: the job by name and what to do, not Redis's wrapping of the refusal.
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("job 'c' is still running")
            && said.contains("redcount jobs rm c --force")
            && !said.contains("script:")
            && !said.contains("ResponseError")
            && !said.contains("rc:{"),
        "{said}"
    );
    run_ok(&["jobs", "rm", "a", "--redis", &url]);
    run_ok(&["jobs", "rm", "c", "--force", "--redis", &url]);
    assert!(keys("rc:{a}:*").is_empty() && keys("rc:{c}:*").is_empty());
    assert_eq!(
        keys("rc:{b}:*"),
        b_before,
        "another job's keys were touched"
    );
    let out = dir.path().join("b.tsv");
    run_ok(&[
        "counts",
        "--redis",
        &url,
        "--job",
        "b",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
}

#[test]
fn sigterm_stops_a_waiting_driver_with_143() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    redcount_testkit::corpus::write_text_corpus(&corpus, 3, 100, 500, 6);
    let child = job().workers(0).input(&corpus).spawn();
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let out = wait_output(child, std::time::Duration::from_secs(20), "run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
}

#[test]
fn a_chaos_interval_too_short_for_redis_to_restart_is_refused_with_advice() {
    let corpus = redcount_testkit::sample_corpus();
    let started = std::time::Instant::now();
    let out = job()
        .flag("--chaos-redis", "100ms")
        .flag("--durability", "rdb")
        .input(&corpus)
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("use 300ms or more"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "refused up front"
    );
}
