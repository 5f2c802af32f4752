//! What a run prints: the summary, --json, the counts export, a reader that stops early, shell completions.

use super::*;

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
    let mut child = job()
        .workers(1)
        .arg("--no-progress")
        .top(1000)
        .out(&out)
        .input(&corpus)
        .command()
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
fn the_summary_and_json_report_what_was_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 20, 1_000, 5_000, 3);
    let expected = oracle_count(&files);
    let out = job().json().workers(2).top(3).input(&corpus).succeed();
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
    let out = job().workers(1).top(3).input(&corpus).succeed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("rank"), "{text}");
    assert!(text.contains("20 files, "), "{text}");
    assert!(text.contains(&format!("{total_words} words")), "{text}");
}

#[test]
fn counts_exports_every_word_of_a_finished_job_with_either_aggregation() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 40, 1_000, 20_000, 77);
    for aggregation in ["workers", "redis"] {
        let job = format!("export-{aggregation}");
        self::job()
            .workers(2)
            .top(0)
            .redis(&url)
            .job(&job)
            .flag("--aggregate-in", aggregation)
            .input(&corpus)
            .succeed();
        let out = run_ok(&["counts", "--redis", &url, "--job", &job]);
        let exported = dir.path().join(format!("{job}.tsv"));
        std::fs::write(&exported, &out.stdout).expect("write export");
        assert_same_counts(&oracle_count(&files), &read_out_file(&exported));
    }
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
