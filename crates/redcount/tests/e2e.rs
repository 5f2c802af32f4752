//! End-to-end: real runs of `redcount run` compared word for word with the independent oracle.

mod common;

use common::*;
use redcount_testkit::corpus::write_text_corpus;

#[test]
fn the_sample_corpus_matches_the_oracle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = redcount_testkit::sample_corpus();
    let got = count_with(dir.path(), &[&corpus], &["--workers", "2"]);
    let expected = oracle_count(&files_below(&corpus));
    assert!(expected.len() > 10_000, "the sample corpus is real text");
    assert_same_counts(&expected, &got);
}

/// `redcount run ... | head` closes the pipe before everything is printed: that is the reader's
/// choice, not an error (it printed `error: Broken pipe (os error 32)` and exited 1), and the
/// `--out` file is written whole all the same.
#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = redcount_testkit::sample_corpus();
    let out = dir.path().join("counts.tsv");
    // The reader is gone before anything is written.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = redcount()
        .args([
            "run",
            "--workers",
            "1",
            "--no-progress",
            "--top",
            "1000",
            "--out",
        ])
        .arg(&out)
        .arg(&corpus)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start redcount");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status = redcount_testkit::wait_with_timeout(
        &mut child,
        std::time::Duration::from_secs(120),
        "run with a closed stdout",
    );
    let stderr = errors.join().unwrap_or_default();
    assert!(
        status.success() && !stderr.contains("Broken pipe"),
        "{status}: {stderr}"
    );
    assert_same_counts(&oracle_count(&files_below(&corpus)), &read_out_file(&out));
}

#[test]
fn the_sample_corpus_on_a_lived_in_redis_is_exact_and_leaves_the_rest_as_it_was() {
    let server = lived_in::lived_in_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = redcount_testkit::sample_corpus();
    let expected = oracle_count(&files_below(&corpus));
    // Twice: a second job next to the first, as back-to-back runs on one Redis do.
    for job in ["sotu-1", "sotu-2"] {
        let got = count_with(
            dir.path(),
            &[&corpus],
            &["--workers", "2", "--redis", &server.url(), "--job", job],
        );
        assert_same_counts(&expected, &got);
    }
    let listed = run_ok(&["jobs", "--redis", &server.url()]);
    let text = String::from_utf8_lossy(&listed.stdout);
    for job in [
        "sotu-1 ",
        "sotu-2 ",
        "old-00 ",
        "killed-mid-run ",
        "never-sealed ",
    ] {
        assert!(text.contains(job), "{job} missing from:\n{text}");
    }
    lived_in::assert_left_as_it_was(&server.url());
}

#[test]
fn forced_small_splits_are_still_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 6, 20_000, 120_000, 11);
    let got = count_with(
        dir.path(),
        &[&corpus],
        &["--workers", "3", "--split-bytes", "4KiB"],
    );
    assert_same_counts(&oracle_count(&files), &got);
}

#[test]
fn one_worker_many_workers_and_batches_agree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 300, 100, 3_000, 5);
    let expected = oracle_count(&files);
    for workers in ["1", "4"] {
        let got = count_with(dir.path(), &[&corpus], &["--workers", workers]);
        assert_same_counts(&expected, &got);
    }
}

#[test]
fn the_summary_and_json_report_what_was_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 20, 1_000, 5_000, 3);
    let expected = oracle_count(&files);
    let out = run_ok(&[
        "run",
        "--json",
        "-w",
        "2",
        "-k",
        "3",
        &corpus.display().to_string(),
    ]);
    let v = json(&out);
    let total_words: u64 = expected.values().sum();
    let total_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).expect("stat").len())
        .sum();
    assert_eq!(v["files"], 20);
    assert_eq!(v["words"], total_words);
    assert_eq!(v["bytes"], total_bytes);
    assert_eq!(v["distinct_words"], expected.len() as u64);
    assert_eq!(v["inputs_failed"], 0);
    let mut by_count: Vec<(&Vec<u8>, &u64)> = expected.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top = v["top"].as_array().expect("top array");
    assert_eq!(top.len(), 3);
    for (row, (word, n)) in top.iter().zip(by_count) {
        assert_eq!(row["count"], *n);
        assert_eq!(row["word"].as_str().expect("word").as_bytes(), &word[..]);
    }
    // The human table: header, three rows, summary line.
    let out = run_ok(&["run", "-w", "1", "-k", "3", &corpus.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("rank"), "{text}");
    assert!(text.contains("20 files, "), "{text}");
    assert!(text.contains(&format!("{total_words} words")), "{text}");
}

#[test]
fn csv_counts_only_the_text_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("tweets.csv");
    let mut data =
        b"tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id\n"
            .to_vec();
    let mut rng = redcount_testkit::Rng::new(9);
    for i in 0..500 {
        let len = rng.range(5, 120);
        let body = redcount_testkit::corpus::text(&mut rng, len);
        let body = String::from_utf8_lossy(&body).replace('"', "\"\"");
        data.extend(
            format!(
                "{i},user{i},True,Tue Oct 31 2017,\"@Support {body}, ok\",{},\n",
                i + 1
            )
            .as_bytes(),
        );
    }
    std::fs::write(&csv, &data).expect("write csv");
    let expected = oracle_csv_count(&[&csv], "text");
    let got = count_with(dir.path(), &[&csv], &["-w", "2"]);
    assert_same_counts(&expected, &got);
    // Split into many pieces between records (quoted fields hold newlines): still exact.
    let split = count_with(dir.path(), &[&csv], &["-w", "3", "--split-bytes", "2KiB"]);
    assert_same_counts(&expected, &split);
    assert!(
        !got.contains_key(&b"True"[..]),
        "other columns are not counted"
    );
}

#[test]
fn letters_lowercase_and_a_dictionary_reproduce_the_lab_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.txt");
    std::fs::write(
        &input,
        "Hello, hello! HELLO world's World 123 foo-bar FOO bar\n",
    )
    .expect("write");
    let dict = dir.path().join("dict.txt");
    std::fs::write(&dict, "hello\nworld foo\n").expect("write");
    let d = dict.display().to_string();
    let got = count_with(
        dir.path(),
        &[&input],
        &["--tokenizer", "letters", "--lowercase", "--dictionary", &d],
    );
    // Independently: letters only, lowercased, dictionary words only.
    let mut expected = Counts::new();
    for token in std::fs::read_to_string(&input)
        .expect("read")
        .split_ascii_whitespace()
    {
        let w: String = token
            .chars()
            .filter(char::is_ascii_alphabetic)
            .collect::<String>()
            .to_ascii_lowercase();
        if ["hello", "world", "foo"].contains(&w.as_str()) {
            *expected.entry(w.into_bytes()).or_insert(0) += 1;
        }
    }
    assert_eq!(expected.get(&b"hello"[..]), Some(&3));
    assert_same_counts(&expected, &got);
}

#[test]
fn workers_started_elsewhere_join_a_job_on_an_external_redis() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 30, 1_000, 20_000, 21);
    let out_file = dir.path().join("out.tsv");
    let mut driver = redcount()
        .args(["run", "--workers", "0", "--job", "shared", "--out"])
        .arg(&out_file)
        .arg(&corpus)
        .env("REDIS_URL", server.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start driver");
    let mut guard = ChildGuard::default();
    for _ in 0..2 {
        guard.0.push(
            redcount()
                .args(["worker", "--job", "shared", "--redis", &server.url()])
                .spawn()
                .expect("start worker"),
        );
    }
    let status = redcount_testkit::wait_with_timeout(
        &mut driver,
        std::time::Duration::from_secs(60),
        "driver",
    );
    assert!(status.success());
    for w in &mut guard.0 {
        let s =
            redcount_testkit::wait_with_timeout(w, std::time::Duration::from_secs(10), "worker");
        assert!(
            s.success(),
            "workers exit by themselves when the job is finished"
        );
    }
    assert_same_counts(&oracle_count(&files), &read_out_file(&out_file));
    // The job stays readable: status and top.
    let url = server.url();
    let st = run_ok(&["status", "--redis", &url, "--job", "shared", "--json"]);
    let v = json(&st);
    assert_eq!(v["finished"], true);
    assert_eq!(v["done"], v["tasks"]);
    let (created, finished, now) = (
        v["created_ms"].as_u64().expect("created"),
        v["finished_ms"].as_u64().expect("finished_ms"),
        v["now_ms"].as_u64().expect("now"),
    );
    assert!(created <= finished && finished <= now, "{v}");
    // The human form reports the run's own span and no live workers once it is finished.
    let text = run_ok(&["status", "--redis", &url, "--job", "shared"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("finished") && text.contains("workers: done"),
        "{text}"
    );
    let span = format!("over {:.2} s", (finished - created) as f64 / 1000.0);
    assert!(text.contains(&span), "{text} (expected {span})");
    let top = run_ok(&["top", "--redis", &url, "--job", "shared", "-k", "2"]);
    assert_eq!(String::from_utf8_lossy(&top.stdout).lines().count(), 3);
    let list = run_ok(&["status", "--redis", &url]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "shared");
    // Re-using the name is refused with a hint, nothing is overwritten.
    let again = run(&[
        "run",
        "--workers",
        "0",
        "--job",
        "shared",
        "--redis",
        &url,
        &corpus.display().to_string(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("is already finished") && said.contains("redcount counts --job shared"),
        "{said}"
    );
}

#[test]
fn pythons_counter_of_bytes_split_agrees() {
    // The oracle exactly as docs/PROTOCOL.md states it, computed by another language entirely.
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    write_text_corpus(&corpus, 40, 1_000, 30_000, 77);
    let got = count_with(
        dir.path(),
        &[&corpus],
        &["-w", "2", "--split-bytes", "8KiB"],
    );
    let script = "import collections,sys,pathlib\n\
        c=collections.Counter()\n\
        [c.update(p.read_bytes().split()) for p in sorted(pathlib.Path(sys.argv[1]).rglob('*')) if p.is_file()]\n\
        sys.stdout.buffer.write(b''.join(w+b'\\t'+str(n).encode()+b'\\n' for w,n in c.items()))\n";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&corpus)
        .output()
        .expect("python3 is needed for this test (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut expected = Counts::new();
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let tab = line.iter().rposition(|&b| b == b'\t').expect("tab");
        let n = std::str::from_utf8(&line[tab + 1..])
            .expect("ascii")
            .parse()
            .expect("number");
        expected.insert(line[..tab].to_vec(), n);
    }
    assert_same_counts(&expected, &got);
}

#[test]
fn counts_exports_every_word_of_a_finished_job_with_either_aggregation() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 40, 1_000, 20_000, 77);
    let corpus_s = corpus.display().to_string();
    for aggregation in ["workers", "redis"] {
        let job = format!("export-{aggregation}");
        run_ok(&[
            "run",
            "-w",
            "2",
            "-k",
            "0",
            "--redis",
            &url,
            "--job",
            &job,
            "--aggregate-in",
            aggregation,
            &corpus_s,
        ]);
        let out = run_ok(&["counts", "--redis", &url, "--job", &job]);
        let exported = dir.path().join(format!("{job}.tsv"));
        std::fs::write(&exported, &out.stdout).expect("write export");
        assert_same_counts(&oracle_count(&files), &read_out_file(&exported));
    }
}

#[test]
fn a_wrong_redis_url_fails_within_seconds_saying_so_once() {
    let port = redcount_server::free_port().expect("a free port");
    let url = format!("redis://:s3cret@127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let corpus = redcount_testkit::sample_corpus();
    let corpus = corpus.to_str().expect("utf-8");
    let out = run(&["run", "-w", "1", "--redis", &url, corpus]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("cannot reach redis"), "{}", errors[0]);
    assert_eq!(
        errors[0].matches("Connection refused").count(),
        1,
        "{}",
        errors[0]
    );
    assert!(!stderr.contains("s3cret"), "the password leaked: {stderr}");
}

#[test]
fn ctrl_c_stops_a_waiting_driver_with_130_and_its_private_redis_is_not_restarted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    redcount_testkit::corpus::write_text_corpus(&corpus, 3, 100, 500, 5);
    // No workers: the driver waits for some forever, until Ctrl-C.
    // Its own process group, as a shell gives a foreground job.
    let child = std::os::unix::process::CommandExt::process_group(&mut redcount(), 0)
        .args(["run", "-w", "0"])
        .arg(&corpus)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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
    let out = run(&["run", "-w", "1", "--sync-replicas", "1", corpus]);
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
    let out = run_ok(&["run", "-w", "1", small.to_str().expect("utf-8")]);
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
    run_ok(&[
        "run", "-w", "1", "--redis", &url, "--job", "kept", "--keep", "1s", c,
    ]);
    run_ok(&["run", "-w", "1", "--redis", &url, "--job", "forever", c]);
    // A running job (no worker ever joins) is never pruned, whatever its keep.
    let mut open = redcount()
        .args([
            "run", "-w", "0", "--redis", &url, "--job", "open", "--keep", "1ms", c,
        ])
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
    run_ok(&[
        "run", "-w", "1", "--redis", &url, "--job", "short", "--keep", "300ms", c,
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    run_ok(&["run", "-w", "1", "--redis", &url, "--job", "next", c]);
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
    for job in ["a", "b"] {
        run_ok(&["run", "-w", "1", "--redis", &url, "--job", job, c]);
    }
    // A job left running: its driver is gone and no worker ever joined.
    let mut open = redcount()
        .args(["run", "-w", "0", "--redis", &url, "--job", "c", c])
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
    let child = redcount()
        .args(["run", "-w", "0"])
        .arg(&corpus)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start run");
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
fn a_redis_without_functions_is_refused_with_the_version_needed() {
    // A real redis-server whose FUNCTION command is gone, as on Redis 6.
    let server = redcount_server::RedisServer::start(redcount_server::ServerOptions {
        dir: None,
        config: vec!["rename-command FUNCTION \"\"".into()],
    })
    .expect("redis-server");
    let corpus = redcount_testkit::sample_corpus();
    let out = run(&[
        "run",
        "-w",
        "1",
        "--redis",
        &server.url(),
        corpus.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("needs Redis 7.0 or newer"), "{stderr}");
}

#[test]
fn the_readmes_acl_user_can_run_and_inspect_jobs() {
    // The ACL line the README gives for a shared Redis: the job's keys and the commands redcount uses.
    let server = redcount_server::RedisServer::start(redcount_server::ServerOptions {
        dir: None,
        config: vec![
            "user rc on >rcpw ~rc:* +@all -@dangerous +info +role +config|get +function|load +wait +scan"
                .into(),
        ],
    })
    .expect("redis-server");
    let url = format!("redis://rc:rcpw@127.0.0.1:{}", server.port());
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 5, 300, 2_000, 12);
    let counts = count_with(dir.path(), &[&corpus], &["--redis", &url, "--job", "acl"]);
    assert_same_counts(&oracle_count(&files), &counts);
    let listing = run_ok(&["jobs", "--redis", &url]);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("acl "));
    run_ok(&["jobs", "rm", "acl", "--redis", &url]);
}

#[test]
fn a_chaos_interval_too_short_for_redis_to_restart_is_refused_with_advice() {
    let corpus = redcount_testkit::sample_corpus();
    let started = std::time::Instant::now();
    let out = run(&[
        "run",
        "--chaos-redis",
        "100ms",
        "--durability",
        "rdb",
        corpus.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("use 300ms or more"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "refused up front"
    );
}

#[test]
fn workers_join_a_private_redis_through_the_url_file_it_names() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 5, 300, 2_000, 13);
    let out = dir.path().join("out.tsv");
    let mut driver = redcount()
        .args(["run", "-w", "0", "--job", "private", "--out"])
        .arg(&out)
        .arg(&corpus)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start driver");
    let stderr = driver.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let advice = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("waiting for workers"))
        .expect("the driver says how to join");
    let file = advice
        .split("$(cat ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no URL file named: {advice}"));
    let mode = std::fs::metadata(file)
        .expect("url file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{file} is readable by others: {mode:o}");
    let url = std::fs::read_to_string(file).expect("read url");
    assert!(
        !advice.contains(url.trim()),
        "the password was printed: {advice}"
    );
    let worker = redcount()
        .args(["worker", "--job", "private"])
        .env("REDIS_URL", url.trim())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run worker");
    assert!(worker.success());
    // Drain the rest so the driver never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let status = driver.wait().expect("driver");
    assert!(status.success());
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
}

#[test]
fn the_server_and_its_version_are_named_and_the_count_is_exact_on_it() {
    // scripts/test.sh runs this file again on Valkey with REDCOUNT_TEST_SERVER=Valkey: this test
    // makes sure that pass ran on the server it says.
    let server = redcount_server::RedisServer::start(Default::default()).expect("server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in");
    let files = write_text_corpus(&input, 30, 500, 5_000, 5);
    let out = dir.path().join("out.tsv");
    let run = run_ok(&[
        "run",
        "-v",
        "--no-progress",
        "--redis",
        &server.url(),
        "--out",
        &out.display().to_string(),
        &input.display().to_string(),
    ]);
    let said = String::from_utf8_lossy(&run.stderr);
    let expected = std::env::var("REDCOUNT_TEST_SERVER").unwrap_or_default();
    let named = said
        .lines()
        .find_map(|l| l.split_once(" is ").filter(|(a, _)| a.contains("redis at")))
        .map(|(_, server)| server.trim().to_string())
        .unwrap_or_default();
    assert!(
        named.starts_with("Redis 7")
            || named.starts_with("Redis 8")
            || named.starts_with("Valkey "),
        "{said}"
    );
    assert!(
        named.starts_with(&expected),
        "expected {expected}, ran on {named}"
    );
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_ok(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("redcount") && script.contains("cancel") && script.contains("replace"),
            "{shell}: {script}"
        );
    }
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn min_count_writes_only_the_words_seen_that_often() {
    let server = redcount_server::RedisServer::start(Default::default()).expect("server starts");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 20, 500, 5_000, 9);
    let mut expected = oracle_count(&files);
    expected.retain(|_, n| *n >= 3);
    assert!(!expected.is_empty());
    let out = dir.path().join("out.tsv");
    let out_arg = out.display().to_string();
    let input = corpus.display().to_string();
    run_ok(&[
        "run",
        "--redis",
        &url,
        "--job",
        "mc",
        "--min-count",
        "3",
        "--out",
        &out_arg,
        &input,
    ]);
    assert_same_counts(&expected, &read_out_file(&out));
    std::fs::remove_file(&out).expect("rm");
    run_ok(&[
        "counts",
        "--redis",
        &url,
        "--job",
        "mc",
        "--min-count",
        "3",
        "--out",
        &out_arg,
    ]);
    assert_same_counts(&expected, &read_out_file(&out));
}

#[test]
fn plan_shows_the_tasks_a_run_makes_and_they_cover_every_byte_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 40, 1_000, 60_000, 17);
    let input = corpus.display().to_string();
    let flags = ["--split-bytes", "32KiB", "-w", "2"];
    let mut args = vec!["run", "--plan", "--json"];
    args.extend(flags);
    args.push(&input);
    let plan = json(&run_ok(&args));
    let mut covered: std::collections::BTreeMap<String, Vec<(u64, u64)>> = Default::default();
    for task in plan["tasks"].as_array().expect("tasks") {
        for r in task["ranges"].as_array().expect("ranges") {
            covered
                .entry(r["path"].as_str().expect("path").to_string())
                .or_default()
                .push((
                    r["start"].as_u64().expect("start"),
                    r["end"].as_u64().expect("end"),
                ));
        }
    }
    assert_eq!(covered.len(), files.len());
    for file in &files {
        let mut ranges = covered[&file.display().to_string()].clone();
        ranges.sort();
        let size = std::fs::metadata(file).expect("size").len();
        assert_eq!(ranges.first().map(|r| r.0), Some(0));
        assert_eq!(ranges.last().map(|r| r.1), Some(size));
        assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0), "{ranges:?}");
    }
    let table = String::from_utf8_lossy(
        &run_ok(&["run", "--plan", "--split-bytes", "32KiB", "-w", "2", &input]).stdout,
    )
    .into_owned();
    let tasks = plan["tasks"].as_array().expect("tasks").len();
    assert!(
        table.starts_with("40 files, ") && table.contains(&format!("-> {tasks} tasks")),
        "{table}"
    );

    let mut args = vec!["run", "--json"];
    args.extend(flags);
    args.push(&input);
    let ran = json(&run_ok(&args));
    assert_eq!(ran["tasks"].as_u64(), Some(tasks as u64), "{ran}");
}
