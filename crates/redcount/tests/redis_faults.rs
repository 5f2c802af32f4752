//! Coordinator faults: the private Redis is SIGKILLed again and again and restarted from its files
//! (RDB checkpoints, AOF everysec, AOF always), including right after the first enqueue and right after
//! the last commit; and restarted with no data at all. Every run must end with the exact counts.

mod common;

use common::*;
use redcount_testkit::corpus::write_text_corpus;

/// Runs a chaotic job over a fresh corpus and checks it against the oracle; returns the JSON summary.
fn chaotic_run(extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 300, 500, 6_000, 41);
    let out = dir.path().join("out.tsv");
    let mut args = vec![
        "run",
        "-w",
        "2",
        "--json",
        "-k",
        "0",
        "--lease-ms",
        "1s",
        "--max-attempts",
        "100",
        "--worker-slow",
        "5ms",
    ];
    args.extend_from_slice(extra);
    let out_s = out.display().to_string();
    let corpus_s = corpus.display().to_string();
    args.extend_from_slice(&["--out", &out_s, &corpus_s]);
    let o = run_ok(&args);
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&o);
    eprintln!(
        "{extra:?}: redis restarts {}, recomputed after a rollback {}, tasks recomputed {}, re-runs {}",
        v["redis_restarts"], v["recomputed_after_rollback"], v["recomputed"], v["recreated"]
    );
    v
}

/// A chaotic run whose Redis is SIGKILLed every 600 ms, right after the first enqueue and right after
/// the last commit; checks that it really crashed more than once.
fn crashing_often(durability: &[&str]) -> serde_json::Value {
    let mut args = durability.to_vec();
    args.extend([
        "--chaos-redis",
        "600ms",
        "--chaos-redis-at",
        "enqueue,finish",
    ]);
    let v = chaotic_run(&args);
    assert!(v["redis_restarts"].as_u64().expect("restarts") >= 2, "{v}");
    v
}

#[test]
fn rdb_checkpoints_survive_repeated_crashes_during_enqueue_and_after_the_last_commit() {
    crashing_often(&["--durability", "rdb", "--checkpoint-ms", "250ms"]);
}

#[test]
fn aof_everysec_survives_repeated_crashes() {
    crashing_often(&["--durability", "aof-everysec"]);
}

#[test]
fn aof_always_survives_repeated_crashes_without_rolling_back() {
    let v = crashing_often(&["--durability", "aof-always"]);
    assert_eq!(
        v["recomputed_after_rollback"], 0,
        "fsync on every write: nothing acknowledged is lost"
    );
    assert_eq!(v["recreated"], 0);
}

#[test]
fn a_redis_that_lost_everything_after_the_last_commit_makes_the_driver_run_the_job_again() {
    // One task per file, so that "every task" is every one of the 300 files.
    let v = chaotic_run(&[
        "--durability",
        "none",
        "--chaos-redis-at",
        "finish",
        "--no-pack",
    ]);
    assert_eq!(v["recreated"], 1, "{v}");
    assert_eq!(
        v["recomputed_after_rollback"], 300,
        "every task was committed twice: {v}"
    );
}

#[test]
fn a_redis_that_lost_everything_during_enqueue_makes_the_driver_start_over() {
    let v = chaotic_run(&["--durability", "none", "--chaos-redis-at", "enqueue"]);
    assert_eq!(v["recreated"], 1, "{v}");
}

#[test]
fn merges_rolled_back_by_redis_crashes_are_redone_exactly() {
    // Merges due at once: every crash rolls back commits and merges alike (to the last checkpoint).
    let v = crashing_often(&[
        "--durability",
        "rdb",
        "--checkpoint-ms",
        "250",
        "--merge-after",
        "0ms",
        "--partitions",
        "4",
    ]);
    assert!(v["merges"].as_u64().expect("merges") > 0, "{v}");
}
