//! What is counted: whole corpora, forced splits, worker counts, CSV, the lab's tokenizer rules, Python's split, --min-count and --plan, each compared word by word with the oracle.

use super::*;

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
    job()
        .redis(&url)
        .job("mc")
        .flag("--min-count", "3")
        .out(&out)
        .input(&corpus)
        .succeed();
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
    let cut = || {
        job()
            .flag("--split-bytes", "32KiB")
            .workers(2)
            .input(&input)
    };
    let plan = json(&cut().arg("--plan").json().succeed());
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
    let table = String::from_utf8_lossy(&cut().arg("--plan").succeed().stdout).into_owned();
    let tasks = plan["tasks"].as_array().expect("tasks").len();
    assert!(
        table.starts_with("40 files, ") && table.contains(&format!("-> {tasks} tasks")),
        "{table}"
    );

    let ran = json(&cut().json().succeed());
    assert_eq!(ran["tasks"].as_u64(), Some(tasks as u64), "{ran}");
}
