//! A Redis shared with others and inputs that change under a job: never a short result with exit
//! 0. An evicting Redis is refused, one out of memory says what to raise, a result deleted by
//! another client fails the job by name, files rewritten mid-job fail by name while the rest is
//! exact, the dictionary is the one the job started with, a worker name is one live process's,
//! and what failed stays visible after the run.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use redcount_server::{RedisServer, ServerOptions};
use redcount_testkit::corpus::write_text_corpus;

fn server_with(config: &[&str]) -> RedisServer {
    RedisServer::start(ServerOptions {
        dir: None,
        config: config.iter().map(|s| s.to_string()).collect(),
    })
    .expect("redis-server starts")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts `redcount ARGS` with piped output.
fn start(args: &[&str]) -> std::process::Child {
    redcount()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start redcount")
}

/// Waits (bounded) until `ready` holds.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_redis_that_evicts_any_key_is_refused_before_a_job_starts() {
    let server = server_with(&["maxmemory 100mb", "maxmemory-policy allkeys-lru"]);
    let corpus = redcount_testkit::sample_corpus();
    let out = job().redis(&server.url()).input(&corpus).output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("maxmemory-policy allkeys-lru"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("noeviction"), "{}", stderr(&out));
    assert!(
        sorted_keys(&server.url(), "rc:*").is_empty(),
        "no job was made"
    );
}

#[test]
fn a_redis_out_of_memory_stops_the_job_at_once_saying_what_to_raise() {
    let server = server_with(&["maxmemory 3mb", "maxmemory-policy noeviction"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).expect("mkdir");
    // 400,000 distinct words: their counts alone need more than 3 MB.
    for f in 0..20 {
        let text: String = (0..20_000).map(|i| format!("id{f}x{i} ")).collect();
        std::fs::write(corpus.join(format!("{f:02}.txt")), text).expect("write");
    }
    let started = Instant::now();
    let out = job()
        .redis(&server.url())
        .workers(2)
        .input(&corpus)
        .output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("out of memory") && err.contains("maxmemory"),
        "{err}"
    );
    assert!(
        !err.contains("kept exiting"),
        "workers were restarted in a loop: {err}"
    );
    eprintln!("stopped after {:?}", started.elapsed());
}

#[test]
fn a_result_deleted_by_another_client_mid_job_fails_the_job_by_name() {
    let server = server_with(&[]);
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    write_text_corpus(&corpus, 60, 2_000, 6_000, 21);
    let out_file = dir.path().join("out.tsv");
    let driver = job()
        .redis(&url)
        .job("del")
        .workers(2)
        .arg("--no-pack")
        .worker_slow("40ms")
        .merge_after("50ms")
        .out(&out_file)
        .input(&corpus)
        .spawn();
    wait_until("a merged result", || {
        !sorted_keys(&url, "rc:{del}:result:*").is_empty()
    });
    let result = sorted_keys(&url, "rc:{del}:result:*").remove(0);
    let mut con = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    let _: i64 = redis::cmd("DEL").arg(&result).query(&mut con).expect("DEL");
    let out = wait_output(driver, Duration::from_secs(60), "driver");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&result), "{}", stderr(&out));
    assert!(!out_file.exists(), "a short result was written");
    let s = job_status(&url, "del");
    assert_eq!(s.phase(), "failed");
    assert!(s.stop_reason.contains(&result), "{}", s.stop_reason);
}

#[test]
fn files_rewritten_or_replaced_mid_job_fail_by_name_and_the_rest_is_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 20, 3_000, 6_000, 31);
    let (replaced, rewritten) = (files[16].clone(), files[18].clone());
    let out_file = dir.path().join("out.tsv");
    let driver = job()
        .workers(1)
        .arg("--no-pack")
        .worker_slow("100ms")
        .out(&out_file)
        .json()
        .input(&corpus)
        .spawn();
    std::thread::sleep(Duration::from_millis(500));
    // An editor's save: a new file renamed over the old one; and a rewrite in place.
    let fresh = dir.path().join("fresh.txt");
    std::fs::write(&fresh, b"brand new words here\n").expect("write");
    std::fs::rename(&fresh, &replaced).expect("rename");
    let mut text = std::fs::read(&rewritten).expect("read");
    text.extend_from_slice(b" appended later\n");
    std::fs::write(&rewritten, text).expect("rewrite");
    let out = wait_output(driver, Duration::from_secs(60), "driver");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = json(&out);
    let failed: Vec<String> = v["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_string())
        .collect();
    let mut expected_failed = vec![
        replaced.display().to_string(),
        rewritten.display().to_string(),
    ];
    expected_failed.sort();
    let mut failed_sorted = failed.clone();
    failed_sorted.sort();
    assert_eq!(failed_sorted, expected_failed, "{}", stderr(&out));
    for f in v["failed"].as_array().expect("failed") {
        assert!(
            f["error"]
                .as_str()
                .unwrap_or("")
                .contains("changed while the job ran"),
            "{f}"
        );
    }
    let rest: Vec<&Path> = files
        .iter()
        .filter(|f| **f != replaced && **f != rewritten)
        .map(|f| f.as_path())
        .collect();
    assert_same_counts(&oracle_count(&rest), &read_out_file(&out_file));
}

#[test]
fn the_dictionary_is_the_one_the_job_started_with() {
    let server = server_with(&[]);
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 24, 2_000, 4_000, 41);
    let dictionary = dir.path().join("dict.txt");
    // The corpus's words are made of letters: keep those starting with a to m.
    let expected_all = oracle_count(&files);
    let keep: Vec<&Vec<u8>> = expected_all
        .keys()
        .filter(|w| w.first().is_some_and(|b| (b'a'..=b'm').contains(b)))
        .collect();
    let text: Vec<u8> = keep
        .iter()
        .flat_map(|w| w.iter().copied().chain([b'\n']))
        .collect();
    std::fs::write(&dictionary, &text).expect("write dictionary");
    let out_file = dir.path().join("out.tsv");
    let driver = job()
        .redis(&url)
        .job("dict")
        .workers(1)
        .arg("--no-pack")
        .worker_slow("80ms")
        .flag("--dictionary", &dictionary)
        .out(&out_file)
        .input(&corpus)
        .spawn();
    wait_until("the job", || try_status(&url, "dict").is_some());
    std::fs::write(&dictionary, b"the\nof\nand\n").expect("edit dictionary");
    // A worker that joins now must use the dictionary the job started with.
    let mut late = ChildGuard::default();
    late.0.push(spawn_worker(&url, "dict", &["--slow", "80ms"]));
    let out = wait_output(driver, Duration::from_secs(60), "driver");
    assert!(out.status.success(), "{}", stderr(&out));
    let expected: Counts = expected_all
        .into_iter()
        .filter(|(w, _)| w.first().is_some_and(|b| (b'a'..=b'm').contains(b)))
        .collect();
    assert_same_counts(&expected, &read_out_file(&out_file));
}

#[test]
fn a_worker_name_used_by_a_live_worker_is_refused() {
    let server = server_with(&[]);
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 30, 2_000, 4_000, 51);
    let out_file = dir.path().join("out.tsv");
    let driver = start_driver(
        &url,
        "names",
        &out_file,
        &corpus,
        &["--lease", "1s", "--no-pack"],
    );
    let mut first = ChildGuard::default();
    first.0.push(spawn_worker(
        &url,
        "names",
        &["--name", "w1", "--slow", "150ms"],
    ));
    wait_until("the first worker", || {
        try_status(&url, "names").is_some_and(|s| s.live_workers > 0)
    });
    let second = start(&["worker", "--job", "names", "--redis", &url, "--name", "w1"]);
    let out = wait_output(second, Duration::from_secs(30), "second worker");
    assert!(!out.status.success(), "a second live w1 was let in");
    assert!(stderr(&out).contains("unique"), "{}", stderr(&out));
    wait_success(driver, Duration::from_secs(60), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out_file));
}

#[test]
fn inputs_that_failed_stay_visible_after_the_run() {
    let server = server_with(&[]);
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 30, 200, 800, 61);
    // A dangling link among small files that are packed into one task.
    std::os::unix::fs::symlink(dir.path().join("gone.txt"), corpus.join("m-gone.txt"))
        .expect("symlink");
    let out_file = dir.path().join("out.tsv");
    let out = job()
        .redis(&url)
        .job("vis")
        .out(&out_file)
        .input(&corpus)
        .output();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_same_counts(&oracle_count(&files), &read_out_file(&out_file));
    let status = run_ok(&["status", "--redis", &url, "--job", "vis"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("1 input(s) failed"), "{text}");
    let jobs = run_ok(&["jobs", "--redis", &url]);
    let line = String::from_utf8_lossy(&jobs.stdout)
        .lines()
        .find(|l| l.starts_with("vis "))
        .map(str::to_string)
        .expect("the job is listed");
    assert_eq!(line.split_whitespace().nth(3), Some("1"), "{line}");
}

#[test]
fn outputs_that_cannot_be_written_are_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no/such/dir/out.tsv");
    let corpus = redcount_testkit::sample_corpus();
    let started = Instant::now();
    let out = job().out(&missing).input(&corpus).output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--out"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("job wc-"),
        "a job was started: {}",
        stderr(&out)
    );
    eprintln!("refused after {:?}", started.elapsed());
}

#[test]
fn a_stopped_stream_leaves_its_job_cancelled_and_every_latency_row_written() {
    let server = server_with(&[]);
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    write_text_corpus(&corpus, 20, 500, 1_000, 71);
    let csv = dir.path().join("lat.csv");
    let child = start(&[
        "stream",
        "--redis",
        &url,
        "--job",
        "s",
        "--rate",
        "40",
        "--files",
        "400",
        "--workers",
        "1",
        "--latency-out",
        &csv.display().to_string(),
        &corpus.display().to_string(),
    ]);
    wait_until("commits", || {
        try_status(&url, "s").is_some_and(|s| s.done >= 20)
    });
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let out = wait_output(child, Duration::from_secs(30), "stream");
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let s = job_status(&url, "s");
    assert_eq!(s.phase(), "cancelled", "{s:?}");
    let rows = std::fs::read_to_string(&csv)
        .expect("latency csv")
        .lines()
        .count()
        .saturating_sub(1);
    assert!(rows as u64 >= 20, "{rows} rows for {} commits", s.done);
    assert_eq!(rows as u64, s.done, "one row per committed file");
}

#[test]
fn a_password_in_the_url_query_works_and_is_never_printed() {
    let server = server_with(&[]);
    let port = server.url().rsplit(':').next().expect("port").to_string();
    let url = format!("redis://127.0.0.1:{port}?password={}", server.password());
    let out = run_ok(&["jobs", "--redis", &url]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no redcount jobs"));
    let wrong = format!("redis://127.0.0.1:{port}?password=wrong-s3cret");
    let out = run(&["jobs", "--redis", &wrong]);
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("wrong-s3cret"), "{}", stderr(&out));
}

/// A worker started by hand says at once what it waits for (a mistyped `--job` waited 60 s in
/// silence), and when the job is over, what it did (it printed nothing); the job is exact.
#[test]
fn a_worker_started_by_hand_says_what_it_waits_for_and_what_it_did() {
    let server = server_with(&[]);
    let url = server.url();
    let env = [("REDIS_URL", url.clone())];
    let mistyped = run_env(&env, &["worker", "--job", "nope", "--wait-for-job", "1s"]);
    assert!(!mistyped.status.success());
    let said = stderr(&mistyped);
    assert!(
        said.contains("there is no job 'nope'") && said.contains("redcount jobs"),
        "{said}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in");
    let files = write_text_corpus(&input, 20, 100, 5_000, 11);
    let out = dir.path().join("out.tsv");
    let driver = start_driver(&url, "by-hand", &out, &input, &[]);
    let worker = run_ok_env(&env, &["worker", "--job", "by-hand"]);
    let printed = String::from_utf8_lossy(&worker.stdout);
    assert!(
        printed.contains("job 'by-hand' is over; this worker committed"),
        "{printed}"
    );
    wait_success(driver, Duration::from_secs(60), "the driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
}
