//! An input that crashes or hangs every worker that counts it: given up alone, named by file or byte range, the rest exact.

use super::*;

/// Runs 2 workers over 40 small files and `poison.txt`, with `REDCOUNT_TEST_POISON=<how>:poison.txt`
/// making every worker that reads it crash or hang; returns the driver's output, the oracle's count
/// of the good files and the counts it wrote.
fn run_with_poison(how: &str) -> (std::process::Output, Counts, Counts) {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let good = redcount_testkit::corpus::write_text_corpus(&corpus, 40, 500, 3_000, 77);
    std::fs::write(corpus.join("poison.txt"), "this input kills workers\n").expect("write");
    let out = dir.path().join("out.tsv");
    let child = job()
        .workers(2)
        .arg("--no-pack")
        .lease("1s")
        .flag("--max-attempts", "3")
        .flag("--task-timeout", "1s")
        .flag("--speculate-factor", "0")
        .out(&out)
        .input(&corpus)
        .env("REDCOUNT_TEST_POISON", format!("{how}:poison.txt"))
        .spawn();
    let output = wait_output(child, Duration::from_secs(90), "run");
    (output, oracle_count(&good), read_out_file(&out))
}

fn assert_poison_buried(how: &str) {
    let (output, expected, counts) = run_with_poison(how);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "finished with a failed input: {stdout}\n{stderr}"
    );
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("failed:"))
        .collect();
    assert_eq!(failed.len(), 1, "only the poison input failed: {stdout}");
    assert!(
        failed[0].contains("poison.txt") && failed[0].contains("gave up after 3 attempts"),
        "{}",
        failed[0]
    );
    assert_same_counts(&expected, &counts);
}

#[test]
fn an_input_that_crashes_every_worker_is_given_up_alone() {
    assert_poison_buried("crash");
}

#[test]
fn an_input_that_hangs_every_worker_is_given_up_alone() {
    assert_poison_buried("hang");
}

/// Runs `run -w 2` over `corpus` with `REDCOUNT_TEST_POISON=<poison>` and `extra` flags; returns
/// the driver's output and the counts it wrote.
fn run_poisoned(
    corpus: &std::path::Path,
    poison: &str,
    extra: &[&str],
) -> (std::process::Output, Counts) {
    let out = corpus.with_extension("out.tsv");
    let child = job()
        .workers(2)
        .lease("1s")
        .flag("--task-timeout", "1s")
        .flag("--speculate-factor", "0")
        .json()
        .out(&out)
        .args(extra)
        .input(corpus)
        .env("REDCOUNT_TEST_POISON", poison)
        .spawn();
    let output = wait_output(child, Duration::from_secs(120), "run");
    (output, read_out_file(&out))
}

#[test]
fn a_poison_file_packed_with_500_good_ones_is_the_only_input_given_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let good = redcount_testkit::corpus::write_text_corpus(&corpus, 500, 500, 3_000, 78);
    std::fs::write(
        corpus.join("doc-00250-poison.txt"),
        "this input kills workers\n",
    )
    .expect("write");
    let (output, counts) = run_poisoned(
        &corpus,
        "crash:doc-00250-poison.txt",
        &["--max-attempts", "3"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let v = json(&output);
    assert_eq!(v["tasks"], 1, "the 501 files are packed into one task");
    let failed = v["failed"].as_array().expect("failed");
    assert_eq!(
        failed.len(),
        1,
        "exactly the poison file is named: {failed:?}"
    );
    assert!(failed[0]["path"]
        .as_str()
        .unwrap_or("")
        .ends_with("doc-00250-poison.txt"));
    assert!(failed[0]["error"]
        .as_str()
        .unwrap_or("")
        .contains("gave up after 3 attempts"));
    assert_same_counts(&oracle_count(&good), &counts);
}

#[test]
fn a_poison_range_in_a_large_split_file_loses_at_most_64_kib_named_by_offsets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    std::fs::create_dir_all(&corpus).expect("mkdir");
    let mut rng = redcount_testkit::Rng::new(91);
    let data = redcount_testkit::corpus::text(&mut rng, 20 << 20);
    let big = corpus.join("big.txt");
    std::fs::write(&big, &data).expect("write");
    let at: u64 = 10_000_000;
    let (output, counts) = run_poisoned(
        &corpus,
        &format!("crash:big.txt@{at}"),
        &["--max-attempts", "2", "--split-bytes", "4MiB"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let v = json(&output);
    let failed = v["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (start, end) = (
        failed[0]["start"].as_u64().expect("start"),
        failed[0]["end"].as_u64().expect("end"),
    );
    assert!(
        start <= at && at < end,
        "the range {start}..{end} holds the poison at {at}"
    );
    assert!(
        end - start <= 64 << 10,
        "only {} bytes may be lost",
        end - start
    );
    assert_eq!(v["bytes_not_counted"], end - start);
    // Everything else is counted: the file without that range (cut at whitespace, so no word is
    // split by leaving it out).
    let rest = dir.path().join("rest");
    std::fs::create_dir_all(&rest).expect("mkdir");
    std::fs::write(rest.join("before.txt"), &data[..start as usize]).expect("write");
    std::fs::write(rest.join("after.txt"), &data[end as usize..]).expect("write");
    assert_same_counts(
        &oracle_count(&[rest.join("before.txt"), rest.join("after.txt")]),
        &counts,
    );
}
