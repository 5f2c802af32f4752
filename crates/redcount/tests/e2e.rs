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
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
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
