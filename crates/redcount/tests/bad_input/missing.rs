//! Inputs that are not there or go away: named up front, or failed alone by name while the rest is counted exactly.

use super::*;

#[test]
fn a_missing_input_is_an_error_before_anything_starts() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let present = dir.path().join("here.txt");
    std::fs::write(&present, "a b").expect("write");
    let missing = dir.path().join("not-here.txt");
    let out = job()
        .redis(&server.url())
        .job("m")
        .input(&present)
        .input(&missing)
        .output();
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
    let out = job().input(&pattern).output();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("matched no files"));
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
    let driver = job()
        .workers(0)
        .job("bad")
        .redis(&url)
        .out(&out_file)
        .input(&d)
        .spawn();
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
    let out = job().workers(2).out(&out_file).input(&d).output();
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
    let driver = job()
        .workers(0)
        .json()
        .arg("--no-pack")
        .job("mounts")
        .redis(&url)
        .out(&out)
        .input(&corpus)
        .spawn();
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
