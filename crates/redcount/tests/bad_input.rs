//! Bad input: named errors up front for paths that name nothing; files that vanish, cannot be read or
//! are malformed CSV end in the dead stream by name while the rest is counted exactly; odd but valid
//! bytes are counted exactly.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_missing_input_is_an_error_before_anything_starts() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let present = dir.path().join("here.txt");
    std::fs::write(&present, "a b").expect("write");
    let missing = dir.path().join("not-here.txt");
    let out = run(&[
        "run",
        "--redis",
        &server.url(),
        "--job",
        "m",
        &present.display().to_string(),
        &missing.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not-here.txt: no such file or directory"),
        "{err}"
    );
    let list = run_ok(&["status", "--redis", &server.url()]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("no redcount jobs"),
        "no job was created"
    );
    let pattern = dir.path().join("*.nothing").display().to_string();
    let out = run(&["run", &pattern]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("matched no files"));
}

#[test]
fn odd_but_valid_bytes_are_counted_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().join("in");
    std::fs::create_dir(&d).expect("mkdir");
    std::fs::write(d.join("empty.txt"), b"").expect("write");
    std::fs::write(d.join("no-newline.txt"), b"last line\twithout newline").expect("write");
    std::fs::write(
        d.join("latin1.txt"),
        b"caf\xe9 na\xefve \xff\xfe caf\xe9\r\n",
    )
    .expect("write");
    let mut binary = Vec::new();
    let mut rng = redcount_testkit::Rng::new(1);
    for _ in 0..200_000 {
        binary.push(rng.next_u64() as u8);
    }
    std::fs::write(d.join("binary.bin"), &binary).expect("write");
    // One enormous line (3 MB, no newline) and one enormous word (2 MB, no whitespace at all).
    let mut line = Vec::new();
    while line.len() < 3_000_000 {
        line.extend_from_slice(b"word ");
        line.extend_from_slice(format!("w{} ", line.len() % 9973).as_bytes());
    }
    std::fs::write(d.join("one-line.txt"), &line).expect("write");
    let mut word = vec![b'x'; 2_000_000];
    word.extend_from_slice(b" and after");
    std::fs::write(d.join("one-word.txt"), &word).expect("write");
    // Random bytes hold NULs: counted only when asked (by default such an input is skipped).
    let got = count_with(
        dir.path(),
        &[&d],
        &["-w", "3", "--split-bytes", "64KiB", "--binary", "count"],
    );
    assert_same_counts(&oracle_count(&files_below(&d)), &got);
    assert_eq!(
        got.get(&vec![b'x'; 2_000_000]),
        Some(&1),
        "the enormous word is one word"
    );
}

/// Polls `status` until the job is sealed (the driver has planned and enqueued everything).
fn wait_sealed(url: &str, job: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = run(&["status", "--redis", url, "--job", job, "--json"]);
        if out.status.success() && json(&out)["stage"] == "sealed" {
            return;
        }
        assert!(Instant::now() < deadline, "job {job} was never sealed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn vanished_unreadable_and_malformed_inputs_are_reported_and_the_rest_is_exact() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().join("in");
    let good = redcount_testkit::corpus::write_text_corpus(&d, 5, 1_000, 10_000, 8);
    let vanish = d.join("vanish.txt");
    let unreadable = d.join("unreadable.txt");
    let bad_csv = d.join("bad.csv");
    std::fs::write(&vanish, "gone soon").expect("write");
    std::fs::write(&unreadable, "soon a directory").expect("write");
    std::fs::write(&bad_csv, "id,text\n1,\"fine\"\n2,too,many,fields\n").expect("write");
    let good_csv = d.join("good.csv");
    std::fs::write(&good_csv, "id,text\n1,\"hello, world\"\n2,hello\n").expect("write");

    let out_file = dir.path().join("out.tsv");
    let driver = redcount()
        .args([
            "run",
            "--workers",
            "0",
            "--job",
            "bad",
            "--redis",
            &url,
            "--out",
        ])
        .arg(&out_file)
        .arg(&d)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start driver");
    wait_sealed(&url, "bad");
    // After planning: one file disappears, another becomes something that cannot be read as a file.
    std::fs::remove_file(&vanish).expect("remove");
    std::fs::remove_file(&unreadable).expect("remove");
    std::fs::create_dir(&unreadable).expect("mkdir");
    let mut guard = ChildGuard::default();
    guard.0.push(
        redcount()
            .args(["worker", "--job", "bad", "--redis", &url])
            .spawn()
            .expect("worker"),
    );
    let out = wait_output(driver, Duration::from_secs(60), "driver");

    assert_eq!(
        out.status.code(),
        Some(3),
        "finished with failed inputs: exit status 3"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 inputs failed"), "{text}");
    assert!(
        text.contains("vanish.txt: no such file or directory"),
        "{text}"
    );
    assert!(text.contains("unreadable.txt: cannot read"), "{text}");
    assert!(text.contains("bad.csv: malformed CSV"), "{text}");
    let mut expected = oracle_count(&good);
    for (w, n) in oracle_csv_count(&[&good_csv], "text") {
        *expected.entry(w).or_insert(0) += n;
    }
    assert_same_counts(&expected, &read_out_file(&out_file));
}

#[test]
fn a_dangling_symlink_and_a_fifo_inside_a_directory_fail_alone_by_name() {
    // They used to abort the whole job before it started ("no such file"), or be skipped unseen.
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().join("in");
    let good = redcount_testkit::corpus::write_text_corpus(&d, 6, 1_000, 10_000, 9);
    std::os::unix::fs::symlink(dir.path().join("nowhere.txt"), d.join("dangling.txt"))
        .expect("symlink");
    let made = std::process::Command::new("mkfifo")
        .arg(d.join("pipe.txt"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let out_file = dir.path().join("out.tsv");
    let out = run(&[
        "run",
        "-w",
        "2",
        "--out",
        &out_file.display().to_string(),
        &d.display().to_string(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 inputs failed"), "{text}");
    assert!(
        text.contains("dangling.txt: no such file or directory"),
        "{text}"
    );
    assert!(text.contains("pipe.txt: cannot read"), "{text}");
    assert!(text.contains("not a regular file"), "{text}");
    assert_same_counts(&oracle_count(&good), &read_out_file(&out_file));
}

#[test]
fn a_file_missing_on_one_workers_host_is_counted_by_a_worker_that_has_it() {
    // Two "hosts" sharing one tree except a directory: worker `lacks` runs in its own mount
    // namespace with an empty tmpfs over it, as if that mount were missing on its host.
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: a private mount namespace needs root");
        return;
    }
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let mut files =
        redcount_testkit::corpus::write_text_corpus(&corpus.join("a_shared"), 12, 200, 1_500, 21);
    let hidden = corpus.join("b_only_on_one_host");
    files.extend(redcount_testkit::corpus::write_text_corpus(
        &hidden, 12, 200, 1_500, 22,
    ));
    let out = dir.path().join("out.tsv");
    let driver = redcount()
        .args([
            "run",
            "-w",
            "0",
            "--json",
            "--no-pack",
            "--job",
            "mounts",
            "--redis",
            &url,
        ])
        .arg("--out")
        .arg(&out)
        .arg(&corpus)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start driver");
    let mut guard = ChildGuard::default();
    // Slow enough (24 files x 100 ms) that `has` cannot claim every file before `lacks`, started
    // through unshare and mount, joins even on a loaded machine (at 30 ms it once did, in CI).
    let has = redcount()
        .args([
            "worker", "--job", "mounts", "--slow", "100ms", "--redis", &url,
        ])
        .args(["--name", "has"])
        .stderr(std::process::Stdio::null())
        .spawn();
    guard.0.push(has.expect("start worker has"));
    // `lacks` must find `has` live, or it would be the only worker and rightly fail the files.
    let mut job = redcount_protocol::Job::new(
        redcount_protocol::Link::open(&url, redcount_protocol::LinkOptions::default())
            .expect("url"),
        "mounts",
    )
    .expect("job");
    let deadline = Instant::now() + Duration::from_secs(30);
    while job
        .status(redcount_protocol::Now::Coordinator, Duration::from_secs(15))
        .map_or(0, |s| s.live_workers)
        == 0
    {
        assert!(Instant::now() < deadline, "worker has never claimed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let exe = env!("CARGO_BIN_EXE_redcount");
    let lacks = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs none "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(&hidden)
        .arg(exe)
        .args([
            "worker", "--job", "mounts", "--name", "lacks", "--slow", "30ms",
        ])
        .args(["--redis", &url])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start worker lacks in a mount namespace");
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    let lacks = wait_output(lacks, Duration::from_secs(30), "worker lacks");
    let log = String::from_utf8_lossy(&lacks.stderr);
    assert!(
        log.contains("left to another worker"),
        "lacks never met a file it lacks, so this proves nothing: {log}"
    );
    let v = json(&done);
    assert_eq!(
        v["failed"],
        serde_json::json!([]),
        "a file was given up: {v}"
    );
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
}

#[test]
fn file_names_that_are_not_utf8_are_counted_and_shown_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).expect("mkdir");
    let odd = corpus.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&odd, "hello world hello\n").expect("write");
    std::fs::write(corpus.join("plain.txt"), "plain words\n").expect("write");
    let files = files_below(&corpus);
    for pack in [&[][..], &["--no-pack"][..]] {
        let got = count_with(dir.path(), &[&corpus], pack);
        assert_same_counts(&oracle_count(&files), &got);
    }
    // Failed, it is named with its bytes escaped.
    std::fs::write(&odd, "a,\"b\n").expect("write");
    let out = run(&[
        "run",
        "--no-pack",
        "--format",
        "csv",
        "--json",
        &corpus.display().to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let paths: Vec<&str> = v["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("caf\\xe9.txt")),
        "{paths:?}"
    );
}

#[test]
fn each_file_is_counted_once_however_it_is_named_or_linked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let top = dir.path().join("top");
    let real = dir.path().join("real");
    std::fs::create_dir_all(top.join("sub")).expect("mkdir");
    std::fs::create_dir_all(&real).expect("mkdir");
    std::fs::write(real.join("a.txt"), "one two\n").expect("write");
    std::fs::write(top.join("b.txt"), "three\n").expect("write");
    std::fs::write(top.join("sub/c.txt"), "four five\n").expect("write");
    let link = |to: &std::path::Path, at: &str| {
        std::os::unix::fs::symlink(to, top.join(at)).expect("symlink")
    };
    link(&real, "real-link");
    link(&top.join("sub"), "sub-link");
    link(&top.join("b.txt"), "b-link.txt");
    link(&top, "sub/back-to-top");
    let b = top.join("b.txt").display().to_string();
    let out = run(&["run", "--json", &top.display().to_string(), &b, &b]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["inputs_failed"], 0, "{v}");
    let mut got: Vec<(String, u64)> = v["top"]
        .as_array()
        .expect("top")
        .iter()
        .map(|e| {
            (
                e["word"].as_str().unwrap_or("").to_string(),
                e["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, u64)> = ["five", "four", "one", "three", "two"]
        .iter()
        .map(|w| (w.to_string(), 1))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_word_longer_than_redcount_keeps_fails_its_input_fast_and_the_rest_is_exact() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).expect("mkdir");
    std::fs::write(corpus.join("a.txt"), "some words here\n").expect("write");
    let huge = corpus.join("huge.txt");
    let mut f = std::fs::File::create(&huge).expect("create");
    f.write_all(b"before ").expect("write");
    let block = vec![b'x'; 1 << 20];
    for _ in 0..70 {
        f.write_all(&block).expect("write");
    }
    f.write_all(b" after\n").expect("write");
    drop(f);
    let out_file = dir.path().join("out.tsv");
    let out = run(&[
        "run",
        "--json",
        "--out",
        &out_file.display().to_string(),
        &corpus.display().to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let failed = v["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("more than 64 MiB"),
        "{failed:?}"
    );
    // Everything but the range holding the huge word is counted: `after` lies past its end.
    let got = read_out_file(&out_file);
    let mut expected = oracle_count(&[corpus.join("a.txt")]);
    for w in ["before", "after"] {
        if let Some(n) = got.get(w.as_bytes()) {
            *expected.entry(w.as_bytes().to_vec()).or_default() += n;
        }
    }
    assert_same_counts(&expected, &got);
}

/// A Redis URL with the wrong port fails in one line that names the address and what to check
/// (it printed a retry warning, then the error, after 5 s).
#[test]
fn a_redis_that_is_not_there_is_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("a.txt");
    std::fs::write(&input, "hello world\n").expect("write");
    let url = format!("redis://127.0.0.1:{port}");
    let out = run_env(
        &[("REDIS_URL", url.clone())],
        &["run", "--no-progress", &input.display().to_string()],
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{said}");
    assert!(
        lines[0].contains(&format!("cannot reach redis at {url}")) && lines[0].contains("--redis"),
        "{said}"
    );
}

#[test]
fn a_missing_or_wrong_password_is_one_line_with_the_url_form() {
    // Test servers always have a (random) password.
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let port = server.port();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("a.txt");
    std::fs::write(&input, "hello world\n").expect("write");
    for (url, expected) in [
        (format!("redis://127.0.0.1:{port}"), "needs a password"),
        (
            format!("redis://:wrong@127.0.0.1:{port}"),
            "refused the user name or password",
        ),
    ] {
        for args in [
            vec!["run", "--no-progress", &input.to_str().expect("utf-8")],
            vec!["jobs"],
        ] {
            let out = run_env(&[("REDIS_URL", url.clone())], &args);
            assert_eq!(out.status.code(), Some(1));
            let said = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "{said}");
            assert!(
                lines[0].contains(expected)
                    && lines[0].contains("redis://:PASSWORD@host:port")
                    && !lines[0].contains("wrong")
                    && !lines[0].contains("unauthenticated"),
                "{said}"
            );
        }
    }
}

#[test]
fn binary_inputs_are_skipped_by_name_and_words_reach_a_terminal_escaped_and_cut() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).expect("mkdir");
    let text = corpus.join("a.txt");
    let long = "y".repeat(10_000);
    let mut body = b"plain words \x1b[31mred \xff\xfe a\\b plain ".to_vec();
    body.extend_from_slice(long.as_bytes());
    body.extend_from_slice(b" words\n");
    std::fs::write(&text, &body).expect("write text");
    // A binary input (a NUL early on) large enough to be split into several tasks: every range of
    // it is told binary by its head.
    let binary = corpus.join("tool.bin");
    let mut bin = b"\x7fELF\x02\x01\x01\x00\x00".to_vec();
    while bin.len() < 40_000 {
        bin.extend_from_slice(b"symbol table entry with words ");
    }
    std::fs::write(&binary, &bin).expect("write binary");
    let input = corpus.display().to_string();
    let out = dir.path().join("out.tsv");
    let out_arg = out.display().to_string();

    let table = run(&[
        "run",
        "--split-bytes",
        "8KiB",
        "--no-pack",
        "--out",
        &out_arg,
        &input,
    ]);
    assert_eq!(
        table.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert_same_counts(
        &oracle_count(std::slice::from_ref(&text)),
        &read_out_file(&out),
    );
    let shown = String::from_utf8_lossy(&table.stdout);
    assert!(
        !table.stdout.contains(&0x1b),
        "an escape byte reached the terminal: {shown}"
    );
    assert!(
        shown.contains("\\x1b[31mred") && shown.contains("\\xff\\xfe"),
        "{shown}"
    );
    assert!(
        shown.contains("a\\\\b"),
        "a backslash is shown doubled: {shown}"
    );
    let long_line = shown
        .lines()
        .find(|l| l.contains("yyyy"))
        .expect("the long word's row");
    assert!(
        long_line.len() < 120 && long_line.contains("(10000 bytes)"),
        "{long_line}"
    );
    let failed: Vec<&str> = shown.lines().filter(|l| l.starts_with("failed:")).collect();
    assert!(!failed.is_empty(), "{shown}");
    for line in &failed {
        assert!(
            line.contains("tool.bin")
                && line.contains("looks binary")
                && line.contains("--binary count"),
            "{line}"
        );
    }

    let json_run = run(&["run", "--json", "-k", "20", &input]);
    let v = json(&json_run);
    let words: Vec<&str> = v["top"]
        .as_array()
        .expect("top")
        .iter()
        .filter_map(|e| e["word"].as_str())
        .collect();
    assert!(
        words.contains(&"\\xff\\xfe") && words.contains(&"a\\\\b"),
        "{words:?}"
    );
    assert!(words.contains(&long.as_str()), "JSON keeps the whole word");
    assert!(
        v["word_escapes"]
            .as_str()
            .is_some_and(|s| s.contains("\\xNN")),
        "{v}"
    );

    let counted = run(&["run", "--binary", "count", "--out", &out_arg, &input]);
    assert!(
        counted.status.success(),
        "{}",
        String::from_utf8_lossy(&counted.stderr)
    );
    assert_same_counts(&oracle_count(&[text, binary]), &read_out_file(&out));
}

#[test]
fn gzip_and_zstd_inputs_and_standard_input_are_counted_exactly() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let plain = dir.path().join("plain");
    let files = redcount_testkit::corpus::write_text_corpus(&plain, 4, 150_000, 300_000, 61);
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).expect("mkdir");
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    };
    // Larger than --split-bytes below: a compressed input is never split.
    std::fs::write(
        inputs.join("a.txt.gz"),
        gz(&std::fs::read(&files[0]).expect("read")),
    )
    .expect("write");
    let zst = ruzstd::encoding::compress_to_vec(
        &std::fs::read(&files[1]).expect("read")[..],
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    std::fs::write(inputs.join("b.log.zst"), zst).expect("write");
    std::fs::copy(&files[2], inputs.join("c.txt")).expect("copy");
    let csv = dir.path().join("d.csv");
    std::fs::write(
        &csv,
        "id,text\n1,\"hello, compressed world\"\n2,hello again\n",
    )
    .expect("csv");
    std::fs::write(
        inputs.join("d.csv.gz"),
        gz(&std::fs::read(&csv).expect("read")),
    )
    .expect("write");
    let mut expected = oracle_count(&files[..4]);
    for (w, n) in redcount_testkit::oracle_csv_count(&[&csv], "text") {
        *expected.entry(w).or_default() += n;
    }

    let out = dir.path().join("out.tsv");
    let mut driver = redcount()
        .args(["run", "--no-progress", "--split-bytes", "64KiB", "--out"])
        .arg(&out)
        .arg(&inputs)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start redcount");
    let fourth = std::fs::read(&files[3]).expect("read");
    let mut stdin = driver.stdin.take().expect("stdin");
    stdin.write_all(&fourth).expect("pipe");
    drop(stdin);
    let done = wait_output(driver, Duration::from_secs(120), "run with stdin");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_same_counts(&expected, &read_out_file(&out));

    // A broken stream fails by name; the rest is exact.
    std::fs::write(inputs.join("broken.gz"), b"\x1f\x8b not really gzip").expect("write");
    let broken = run(&[
        "run",
        "--out",
        &out.display().to_string(),
        &inputs.display().to_string(),
    ]);
    assert_eq!(broken.status.code(), Some(3));
    let said = String::from_utf8_lossy(&broken.stdout);
    assert!(
        said.contains("broken.gz") && said.contains("not a valid Gzip stream"),
        "{said}"
    );
    let mut without_stdin = oracle_count(&files[..3]);
    for (w, n) in redcount_testkit::oracle_csv_count(&[&csv], "text") {
        *without_stdin.entry(w).or_default() += n;
    }
    assert_same_counts(&without_stdin, &read_out_file(&out));
}
