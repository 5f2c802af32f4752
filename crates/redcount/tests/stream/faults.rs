//! Streams under faults: a killed worker's file redelivered, a straggler's task finished by another worker, files due during a Redis outage keeping their due time.

use super::*;

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
