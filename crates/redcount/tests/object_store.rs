//! Inputs in an object store: a real S3-compatible HTTP server (`moto_server`, started here on a
//! loopback port) read through the `object_store` crate's S3 client, configured only by the AWS
//! environment variables, as a user's S3 or MinIO would be. Many small objects, a large object
//! split at whitespace, a CSV object split between records, objects mixed with local files, an
//! object deleted or replaced mid-job (failed by name, the rest exact), and connections to the
//! store cut again and again (retried, exact).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use redcount_protocol::{Job, Link, LinkOptions};
use redcount_server::{RedisServer, ServerOptions};
use redcount_testkit::s3::S3Server;
use redcount_testkit::{Fault, FaultProxy};

/// The S3 server, or None (the test says it is skipped) where moto is not installed; CI installs
/// it (scripts/test-venv.sh), so there its absence fails the test.
fn s3_or_skip() -> Option<S3Server> {
    match S3Server::start() {
        Ok(server) => Some(server),
        Err(err) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the object store tests: {err}"
            );
            eprintln!("skipped: {err}");
            None
        }
    }
}

/// `redcount run --json -k 0 -w 2 --out OUT FLAGS INPUTS` with the S3 server's variables; it
/// must succeed.
fn count_objects(env: &[(&str, String)], out: &Path, flags: &[&str], inputs: &[&str]) -> Output {
    let mut command = job()
        .envs(env)
        .json()
        .top(0)
        .workers(2)
        .out(out)
        .args(flags);
    for input in inputs {
        command = command.input(input);
    }
    command.succeed()
}

/// A CSV of `rows` records whose text column holds quoted commas, quotes and newlines.
fn write_csv(path: &Path, rows: usize, seed: u64) {
    let mut rng = redcount_testkit::Rng::new(seed);
    let mut text = String::from("id,author,text,likes\n");
    for i in 0..rows {
        let words: Vec<String> = (0..rng.range(3, 25))
            .map(|_| format!("w{}", rng.range(0, 400)))
            .collect();
        let body = match i % 4 {
            0 => words.join(" "),
            1 => format!("\"{}, and \"\"quoted\"\"\"", words.join(" ")),
            2 => format!("\"{}\nsecond line\"", words.join(" ")),
            _ => format!("\"{}\"", words.join("\t")),
        };
        text.push_str(&format!("{i},a{},{body},{}\n", i % 7, i % 13));
    }
    std::fs::write(path, text).expect("write csv");
}

#[test]
fn objects_small_large_and_csv_mixed_with_local_files_are_counted_exactly() {
    let Some(s3) = s3_or_skip() else { return };
    let env = s3.env();
    let dir = tempfile::tempdir().expect("temp dir");
    s3.create_bucket("corpus").expect("bucket");
    // 150 small objects under small/, one 3 MB object, a local directory beside them.
    let small = dir.path().join("small");
    let small_files = redcount_testkit::corpus::write_text_corpus(&small, 150, 200, 4_000, 81);
    s3.upload_dir("corpus", "small", &small).expect("upload");
    let large = dir.path().join("large.txt");
    let mut rng = redcount_testkit::Rng::new(82);
    std::fs::write(&large, redcount_testkit::corpus::text(&mut rng, 3_000_000)).expect("large");
    s3.put(
        "corpus",
        "big/large.txt",
        &std::fs::read(&large).expect("read"),
    )
    .expect("put large");
    let local = dir.path().join("local");
    let local_files = redcount_testkit::corpus::write_text_corpus(&local, 20, 100, 2_000, 83);

    let out = dir.path().join("out.tsv");
    let done = count_objects(
        &env,
        &out,
        &["--split-bytes", "256KiB"],
        &[
            "s3://corpus/small",
            "s3://corpus/big/large.txt",
            local.to_str().expect("utf-8"),
        ],
    );
    let mut files: Vec<PathBuf> = small_files.clone();
    files.push(large.clone());
    files.extend(local_files);
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let summary = json(&done);
    assert_eq!(summary["files"], 171, "{summary}");
    assert_eq!(summary["inputs_failed"], 0, "{summary}");
    // The large object alone is about 12 tasks of 256 KiB; the small ones are packed.
    let tasks = summary["tasks"].as_u64().expect("tasks");
    assert!(tasks >= 12, "the large object was not split: {summary}");

    // A CSV object split between records (quoted newlines included): the text column, exactly.
    let csv = dir.path().join("tweets.csv");
    write_csv(&csv, 3_000, 84);
    s3.put(
        "corpus",
        "csv/tweets.csv",
        &std::fs::read(&csv).expect("read"),
    )
    .expect("put csv");
    let out_csv = dir.path().join("csv.tsv");
    let done = count_objects(
        &env,
        &out_csv,
        &["--split-bytes", "32KiB", "--csv-column", "text"],
        &["s3://corpus/csv/tweets.csv"],
    );
    assert_same_counts(
        &oracle_csv_count(std::slice::from_ref(&csv), "text"),
        &read_out_file(&out_csv),
    );
    assert!(json(&done)["tasks"].as_u64().expect("tasks") > 3, "split");

    // A URL that names nothing is refused up front, by name.
    let missing = job().envs(&env).input("s3://corpus/nothing-here/").output();
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("s3://corpus/nothing-here/"), "{said}");
}

#[test]
fn an_object_deleted_or_replaced_mid_job_fails_by_name_and_the_rest_is_exact() {
    let Some(s3) = s3_or_skip() else { return };
    let env = s3.env();
    let dir = tempfile::tempdir().expect("temp dir");
    s3.create_bucket("live").expect("bucket");
    let input = dir.path().join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&input, 40, 200, 2_000, 91);
    let keys = s3.upload_dir("live", "in", &input).expect("upload");
    let redis = RedisServer::start(ServerOptions::default()).expect("redis-server");
    let out = dir.path().join("out.tsv");
    // One worker, one task per object, 50 ms of CPU each: the last objects are read seconds after
    // the first commits, long after they were deleted or replaced.
    let driver = self::job()
        .envs(&env)
        .env("REDIS_URL", redis.url())
        .json()
        .top(0)
        .workers(1)
        .job("live")
        .arg("--no-pack")
        .worker_slow("50ms")
        .out(&out)
        .input("s3://live/in")
        .spawn();
    let mut job = Job::new(
        Link::open(&redis.url(), LinkOptions::default()).expect("url"),
        "live",
    )
    .expect("job");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = job
            .status(redcount_protocol::now_ms(), Duration::from_secs(10))
            .map(|s| s.done)
            .unwrap_or(0);
        if done >= 3 {
            assert!(done < 30, "the job ran ahead of the test: slow it down");
            break;
        }
        assert!(Instant::now() < deadline, "the job never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (deleted, replaced) = (&keys[39], &keys[38]);
    s3.delete("live", deleted).expect("delete");
    // The same length, other words: only its version (ETag) tells the reads it changed.
    let original = std::fs::read(input.join(replaced.trim_start_matches("in/"))).expect("read");
    let shifted: Vec<u8> = original
        .iter()
        .map(|&b| {
            if b.is_ascii_lowercase() {
                b'a' + (b - b'a' + 1) % 26
            } else {
                b
            }
        })
        .collect();
    assert_ne!(shifted, original);
    s3.put("live", replaced, &shifted).expect("replace");
    let done = wait_output(driver, Duration::from_secs(120), "driver");
    let said = String::from_utf8_lossy(&done.stderr);
    assert_eq!(
        done.status.code(),
        Some(3),
        "exit 3: some inputs failed\n{said}"
    );
    let summary = json(&done);
    assert_eq!(summary["inputs_failed"], 2, "{summary}");
    assert!(
        said.contains(&format!("s3://live/{deleted}")) && said.contains("no such object"),
        "the deleted object is named with its reason:\n{said}"
    );
    assert!(
        said.contains(&format!("s3://live/{replaced}"))
            && said.contains("changed while the job ran"),
        "the replaced object is named with its reason:\n{said}"
    );
    // Everything else, exactly (the objects were uploaded in key order: files 0..38).
    let kept: Vec<PathBuf> = files
        .iter()
        .filter(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !deleted.ends_with(name) && !replaced.ends_with(name)
        })
        .cloned()
        .collect();
    assert_eq!(kept.len(), 38);
    assert_same_counts(&oracle_count(&kept), &read_out_file(&out));
}

#[test]
fn connections_to_the_store_cut_again_and_again_are_retried_and_the_counts_stay_exact() {
    let Some(s3) = s3_or_skip() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    s3.create_bucket("flaky").expect("bucket");
    let input = dir.path().join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&input, 120, 500, 20_000, 95);
    s3.upload_dir("flaky", "in", &input).expect("upload");
    // The workers reach the store only through a proxy that cuts every connection for 150 ms, a
    // dozen times, at seeded moments.
    let proxy =
        std::sync::Arc::new(FaultProxy::start(&format!("127.0.0.1:{}", s3.port())).expect("proxy"));
    let env: Vec<(&'static str, String)> = s3
        .env()
        .into_iter()
        .map(|(k, v)| match k {
            "AWS_ENDPOINT_URL" => (k, format!("http://{}", proxy.addr())),
            _ => (k, v),
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let chaos = {
        let stop = stop.clone();
        let proxy_handle = proxy.clone();
        std::thread::spawn(move || {
            let mut rng = redcount_testkit::Rng::new(96);
            let mut cuts = 0;
            while cuts < 12 && !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(rng.range(50, 250)));
                proxy_handle.set(Fault::Cut);
                std::thread::sleep(Duration::from_millis(150));
                proxy_handle.set(Fault::Pass);
                cuts += 1;
            }
            cuts
        })
    };
    let out = dir.path().join("out.tsv");
    let done = count_objects(
        &env,
        &out,
        &["--no-pack", "--worker-slow", "10ms"],
        &["s3://flaky/in"],
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let cuts = chaos.join().expect("chaos thread");
    assert!(cuts >= 3, "only {cuts} cuts happened while the job ran");
    assert_eq!(json(&done)["inputs_failed"], 0);
    assert!(proxy.bytes() > 0, "the workers read through the proxy");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
}

#[test]
fn objects_injected_as_a_stream_are_counted_exactly_with_one_latency_row_each() {
    let Some(s3) = s3_or_skip() else { return };
    let env = s3.env();
    let dir = tempfile::tempdir().expect("temp dir");
    s3.create_bucket("stream").expect("bucket");
    let input = dir.path().join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&input, 9, 300, 3_000, 97);
    let keys = s3.upload_dir("stream", "in", &input).expect("upload");
    let (out, lat) = (dir.path().join("out.tsv"), dir.path().join("lat.csv"));
    let done = run_ok_env(
        &env,
        &[
            "stream",
            "--rate",
            "100",
            "--batch",
            "4",
            "--files",
            "30",
            "-w",
            "2",
            "--json",
            "--out",
            out.to_str().expect("utf-8"),
            "--latency-out",
            lat.to_str().expect("utf-8"),
            "s3://stream/in",
        ],
    );
    // 30 injections cycling through the 9 objects, in key order.
    let cycle: Vec<&PathBuf> = files.iter().cycle().take(30).collect();
    assert_same_counts(&oracle_count(&cycle), &read_out_file(&out));
    assert_eq!(json(&done)["injected_files"], 30);
    let rows = std::fs::read_to_string(&lat).expect("latency csv");
    let first = format!("s3://stream/{},", keys[0]);
    assert_eq!(
        rows.lines().count(),
        31,
        "a header and a row per injected object"
    );
    assert_eq!(
        rows.lines().filter(|l| l.starts_with(&first)).count(),
        4,
        "30 files over 9 objects: the first four times"
    );
}

#[test]
fn an_empty_prefix_and_a_missing_bucket_are_said_in_words_without_the_stores_xml() {
    let Some(s3) = s3_or_skip() else { return };
    let env = s3.env();
    s3.create_bucket("there").expect("bucket");
    s3.put("there", "logs/a.txt", b"a b c\n").expect("put");
    let cases = [
        (
            "s3://there/nothing-here/",
            "bucket 'there' has no object whose key is or starts with 'nothing-here/'",
        ),
        ("s3://nobucket/logs", "NoSuchBucket"),
    ];
    for (url, expected) in cases {
        let out = job().envs(&env).arg("--no-progress").input(url).output();
        assert_eq!(out.status.code(), Some(1));
        let said = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{said}");
        assert!(
            lines[0].contains(url) && lines[0].contains(expected) && !said.contains("<?xml"),
            "{said}"
        );
    }
    let missing = job()
        .envs(&env)
        .arg("--no-progress")
        .input("s3://nobucket/logs")
        .output();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("check the bucket's name"));
}
