//! Stream jobs: exact counts with cycled inputs, one latency row per injected file (none for
//! duplicates), a killed worker's file re-delivered with its latency spike in the data, a straggler's
//! task finished by another worker, and valid plots. Short and bounded.

mod common;

use std::path::Path;

use common::*;
use redcount_testkit::corpus::write_text_corpus;

/// Latency CSV rows: (path, latency_ms, worker, attempts).
fn latency_rows(path: &Path) -> Vec<(String, u64, String, u64)> {
    latency_records(path)
        .into_iter()
        .map(|r| (r.path, r.latency, r.worker, r.attempts))
        .collect()
}

/// One row of the latency CSV.
struct LatencyRecord {
    path: String,
    due: u64,
    injected: u64,
    latency: u64,
    worker: String,
    attempts: u64,
}

fn latency_records(path: &Path) -> Vec<LatencyRecord> {
    let text = std::fs::read_to_string(path).expect("read latency csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("path,due_at_ms,injected_at_ms,claimed_at_ms,committed_at_ms,latency_ms,worker,attempts")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let ms = |i: usize| -> u64 { f[i].parse().expect("ms") };
            let (due, injected, committed, latency) = (ms(1), ms(2), ms(4), ms(5));
            assert_eq!(latency, committed - due, "latency = committed - due");
            assert!(due <= injected + 50, "accepted before it was due: {l}");
            LatencyRecord {
                path: f[0].to_string(),
                due,
                injected,
                latency,
                worker: f[6].to_string(),
                attempts: f[7].parse().expect("attempts"),
            }
        })
        .collect()
}

/// The oracle for `injected` files taken in turn from `files` (cycling).
fn cycled_oracle(files: &[std::path::PathBuf], injected: usize) -> Counts {
    let cycle: Vec<&std::path::PathBuf> = files.iter().cycle().take(injected).collect();
    oracle_count(&cycle)
}

#[test]
fn cycled_injection_is_counted_exactly_with_one_latency_row_per_file() {
    cycled_injection(None);
}

#[test]
fn a_stream_on_a_lived_in_redis_is_exact_and_leaves_the_rest_as_it_was() {
    let server = lived_in::lived_in_redis();
    cycled_injection(Some(&server.url()));
    lived_in::assert_left_as_it_was(&server.url());
}

/// A stream of 20 files cycling over 7, on a private Redis or on `redis`: exact counts, one
/// latency row per file, a point per file in the plot.
fn cycled_injection(redis: Option<&str>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 7, 500, 4_000, 31);
    let (out, lat, svg) = (
        dir.path().join("out.tsv"),
        dir.path().join("lat.csv"),
        dir.path().join("lat.svg"),
    );
    let (out_arg, lat_arg, svg_arg, corpus_arg) = (
        out.display().to_string(),
        lat.display().to_string(),
        svg.display().to_string(),
        corpus.display().to_string(),
    );
    let mut args = vec![
        "stream",
        "--rate",
        "100",
        "--batch",
        "3",
        "--files",
        "20",
        "-w",
        "2",
        "--json",
        "--out",
        &out_arg,
        "--latency-out",
        &lat_arg,
        "--plot",
        &svg_arg,
        &corpus_arg,
    ];
    if let Some(url) = redis {
        args.extend(["--redis", url]);
    }
    let o = run_ok(&args);
    assert_same_counts(&cycled_oracle(&files, 20), &read_out_file(&out));
    let rows = latency_rows(&lat);
    assert_eq!(rows.len(), 20, "one row per injected file");
    let v = json(&o);
    assert_eq!(v["injected_files"], 20);
    // The summary speaks of the files injected (20), not of the 7 it cycled over.
    assert_eq!(v["files"], 20, "{v}");
    let injected_bytes: u64 = (0..20)
        .map(|i| {
            std::fs::metadata(&files[i % files.len()])
                .expect("stat")
                .len()
        })
        .sum();
    assert_eq!(v["bytes"], injected_bytes, "{v}");
    assert_eq!(v["latency"]["count"], 20);
    let svg_text = std::fs::read_to_string(&svg).expect("read svg");
    assert!(svg_text.starts_with("<svg"));
    assert_eq!(
        svg_text.matches("<circle").count(),
        20 + 1,
        "a point per file, plus the legend's"
    );
    // Paths in the rows are the inputs, each as often as it was injected.
    let first = files[0].display().to_string();
    assert_eq!(
        rows.iter().filter(|r| r.0 == first).count(),
        3,
        "20 files over 7 inputs: the first thrice"
    );
}

#[test]
fn a_killed_workers_file_is_redelivered_and_its_latency_spike_is_in_the_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 4, 500, 2_000, 32);
    let (out, lat, png) = (
        dir.path().join("out.tsv"),
        dir.path().join("lat.csv"),
        dir.path().join("lat.png"),
    );
    // Batches of 4 files every 2 s; each file costs 200 ms of CPU, so at 300 ms both workers hold
    // files, and the kill takes some with it.
    let o = run_ok(&[
        "stream",
        "--rate",
        "2",
        "--batch",
        "4",
        "--files",
        "8",
        "-w",
        "2",
        "--json",
        "--worker-slow",
        "200ms",
        "--lease-ms",
        "1s",
        "--speculate-factor",
        "0",
        "--kill-worker",
        "300ms",
        "--restart-workers",
        "200ms",
        "--out",
        &out.display().to_string(),
        "--latency-out",
        &lat.display().to_string(),
        "--plot",
        &png.display().to_string(),
        &corpus.display().to_string(),
    ]);
    assert_same_counts(&cycled_oracle(&files, 8), &read_out_file(&out));
    let rows = latency_rows(&lat);
    assert_eq!(rows.len(), 8);
    let redelivered: Vec<_> = rows.iter().filter(|r| r.3 >= 2).collect();
    assert!(
        !redelivered.is_empty(),
        "the killed worker's files were re-delivered: {rows:?}"
    );
    let v = json(&o);
    let p50 = v["latency"]["p50"].as_u64().expect("p50");
    for r in &redelivered {
        assert!(
            r.1 >= 1_000,
            "re-delivered only once the 1 s lease ran out: {r:?}"
        );
        assert!(r.1 > p50, "a spike above the median ({p50} ms): {r:?}");
    }
    assert!(
        p50 < 1_000,
        "the spike is a spike, not the norm: p50 {p50} ms"
    );
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["kill-worker", "restart-worker"]);
    assert_eq!(v["recoveries"].as_array().expect("recoveries").len(), 2);
    assert_eq!(&std::fs::read(&png).expect("png")[..4], b"\x89PNG");
}

#[test]
fn a_stragglers_task_is_finished_by_another_worker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 6, 500, 2_000, 33);
    let (out, lat) = (dir.path().join("out.tsv"), dir.path().join("lat.csv"));
    // Files cost 50 ms of CPU and come 3 at a time; from the start one worker runs 1/20 of the time.
    // An idle worker re-runs a task that has run longer than 3 x the recent p90 (and 500 ms): at
    // 10 files/s the other worker is idle half the time even when the tests around it load both
    // cores (at 15/s it could be busy until the straggler had finished alone).
    let o = run_ok(&[
        "stream",
        "--rate",
        "10",
        "--batch",
        "3",
        "--files",
        "45",
        "-w",
        "2",
        "--json",
        "--worker-slow",
        "50ms",
        "--lease-ms",
        "30s",
        "--straggler",
        "0ms:20",
        "--out",
        &out.display().to_string(),
        "--latency-out",
        &lat.display().to_string(),
        &corpus.display().to_string(),
    ]);
    assert_same_counts(&cycled_oracle(&files, 45), &read_out_file(&out));
    let v = json(&o);
    assert!(v["speculated"].as_u64().expect("speculated") >= 1, "{v}");
    let rows = latency_rows(&lat);
    assert_eq!(
        rows.len(),
        45,
        "one row per file: a duplicate commit records none"
    );
    assert!(
        rows.iter().any(|r| r.3 >= 2),
        "a speculative copy committed: {rows:?}"
    );
    // With a 30 s lease, nothing here waited for a lease to expire.
    assert!(rows.iter().all(|r| r.1 < 30_000));
}

#[test]
fn top_follow_shows_the_live_result_until_the_stream_ends() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 5, 500, 3_000, 34);
    let driver = redcount()
        .args([
            "stream", "--rate", "8", "--files", "16", "-w", "2", "--job", "live", "--redis", &url,
        ])
        .arg(&corpus)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start stream");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !run(&["status", "--redis", &url, "--job", "live"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let follow = run_ok(&[
        "top", "--follow", "--redis", &url, "--job", "live", "-k", "3",
    ]);
    wait_success(driver, std::time::Duration::from_secs(60), "stream");
    let text = String::from_utf8_lossy(&follow.stdout);
    let frames: Vec<&str> = text.split("job live:").skip(1).collect();
    assert!(frames.len() >= 2, "it redrew while the stream ran: {text}");
    let last = frames.last().expect("a frame");
    assert!(
        last.contains("16 of 16 tasks done") && last.contains("(finished)"),
        "{last}"
    );
    // The last frame's top 3 is the exact result's top 3.
    let expected = cycled_oracle(&files, 16);
    let mut ranked: Vec<(&Vec<u8>, &u64)> = expected.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let rows: Vec<&str> = last.lines().skip(2).take(3).collect();
    for (row, (word, n)) in rows.iter().zip(ranked) {
        let shown = match std::str::from_utf8(word) {
            Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
            _ => word.escape_ascii().to_string(),
        };
        let want = format!("{n}  {shown}");
        assert!(row.trim_start().starts_with(&want), "{row:?} vs {want:?}");
    }
    // The latency of a finished job can be read, written and drawn again later.
    let (csv, svg) = (dir.path().join("again.csv"), dir.path().join("again.svg"));
    let (csv_s, svg_s) = (csv.display().to_string(), svg.display().to_string());
    let o = run_ok(&[
        "latency",
        "--redis",
        &url,
        "--job",
        "live",
        "--latency-out",
        &csv_s,
        "--plot",
        &svg_s,
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("16 files: latency p50"));
    assert_eq!(latency_rows(&csv).len(), 16);
    assert_eq!(
        std::fs::read_to_string(&svg)
            .expect("svg")
            .matches("<circle")
            .count(),
        16 + 1
    );
}

#[test]
fn files_due_during_a_redis_outage_keep_their_due_time_and_show_their_wait() {
    // 100 files/s in batches of 5 against a Redis that is SIGKILLed 1.5 s in and restarted (from its
    // AOF) 2 s later. The batches due meanwhile are enqueued late, each with the time it was due:
    // no hole in the due times, and the slowest file waited at least the outage.
    let mut server = redcount_server::RedisServer::start(redcount_server::ServerOptions {
        dir: None,
        config: vec!["appendonly yes".into(), "appendfsync always".into()],
    })
    .expect("redis-server");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 20, 200, 2_000, 61);
    let (out, lat) = (dir.path().join("out.tsv"), dir.path().join("lat.csv"));
    let child = redcount()
        .args([
            "stream", "--rate", "100", "--batch", "5", "--files", "600", "-w", "2",
        ])
        .args(["--json", "--redis", &url, "--out"])
        .arg(&out)
        .arg("--latency-out")
        .arg(&lat)
        .arg(&corpus)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start stream");
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    server.kill();
    let outage = std::time::Duration::from_millis(2_000);
    std::thread::sleep(outage);
    server.restart().expect("restart redis");
    let back_ms = redcount_protocol::now_ms();
    let o = wait_success(child, std::time::Duration::from_secs(90), "stream");
    assert_same_counts(&cycled_oracle(&files, 600), &read_out_file(&out));
    let mut rows = latency_records(&lat);
    assert_eq!(rows.len(), 600, "one row per file");
    rows.sort_by_key(|r| r.due);
    let gaps: Vec<u64> = rows.windows(2).map(|w| w[1].due - w[0].due).collect();
    let widest = gaps.iter().copied().max().unwrap_or(0);
    assert!(
        widest <= 100,
        "a hole of {widest} ms in the due times (batches are 50 ms apart)"
    );
    let slowest = rows.iter().map(|r| r.latency).max().unwrap_or(0);
    assert!(
        slowest >= outage.as_millis() as u64,
        "the slowest file waited {slowest} ms, less than the {outage:?} outage"
    );
    let late = rows.iter().filter(|r| r.injected > r.due + 500).count();
    assert!(
        late > 0,
        "no file was accepted late: the outage did not happen"
    );
    // Clients retry at most 250 ms apart: the first file accepted after the restart went in soon
    // after Redis was back (a loose bound: this is a shared 2-core machine).
    let resumed = rows
        .iter()
        .map(|r| r.injected)
        .filter(|&t| t >= back_ms)
        .min()
        .map(|t| t - back_ms);
    eprintln!(
        "outage: slowest {slowest} ms, {late} files accepted late, resumed {resumed:?} ms after the restart; {}",
        json(&o)
    );
    assert!(
        resumed.is_some_and(|ms| ms <= 1_500),
        "resumed {resumed:?} ms after the restart"
    );
}

#[test]
fn a_stream_longer_than_its_history_keeps_only_the_newest_records_and_loses_no_row() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 9, 300, 2_000, 47);
    let (out, lat) = (dir.path().join("out.tsv"), dir.path().join("lat.csv"));
    let child = redcount()
        .args([
            "stream",
            "--rate",
            "200",
            "--batch",
            "4",
            "--files",
            "120",
            "-w",
            "2",
            "--json",
            "--job",
            "hist",
            "--history",
            "25",
            "--no-progress",
            "--out",
        ])
        .arg(&out)
        .arg("--latency-out")
        .arg(&lat)
        .arg(&corpus)
        .env("REDIS_URL", server.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start stream");
    let o = wait_success(child, std::time::Duration::from_secs(90), "stream");
    assert_same_counts(&cycled_oracle(&files, 120), &read_out_file(&out));
    // Every file has its row, though Redis kept only the last 25 records.
    let rows = latency_rows(&lat);
    assert_eq!(rows.len(), 120, "one row per injected file");
    let v = json(&o);
    assert_eq!(v["latency"]["count"], 120, "{v}");
    for (i, file) in files.iter().enumerate() {
        let want = (0..120).filter(|k| k % files.len() == i).count();
        let got = rows.iter().filter(|r| Path::new(&r.0) == file).count();
        assert_eq!(got, want, "rows of {}", file.display());
    }
    let mut con = redis::Client::open(server.url())
        .expect("url")
        .get_connection()
        .expect("connect");
    let xlen = |con: &mut redis::Connection, key: &str| -> u64 {
        redis::cmd("XLEN").arg(key).query(con).expect("XLEN")
    };
    assert_eq!(
        xlen(&mut con, "rc:{hist}:done"),
        25,
        "the history is trimmed"
    );
    assert_eq!(
        xlen(&mut con, "rc:{hist}:tasks"),
        0,
        "committed tasks are deleted"
    );
}
