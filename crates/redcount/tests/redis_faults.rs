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
    let o = job()
        .workers(2)
        .json()
        .top(0)
        .lease("1s")
        .worker_slow("5ms")
        .args(extra)
        .out(&out)
        .input(&corpus)
        .succeed();
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

#[test]
fn a_redis_that_lost_everything_between_enqueue_chunks_leaves_no_hole() {
    // 2,500 one-task files go 1,000 per enqueue; Redis restarts empty after the first chunk. The
    // driver used to re-send the first chunk but not the one that failed, the next landed above a
    // hole, and the job never sealed ("kept losing tasks while being sealed").
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 2_500, 10, 60, 43);
    let out = dir.path().join("out.tsv");
    let o = job()
        .workers(2)
        .json()
        .top(0)
        .arg("--no-pack")
        .flag("--durability", "none")
        .flag("--chaos-redis-at", "enqueue")
        .out(&out)
        .input(&corpus)
        .succeed();
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&o);
    assert_eq!(
        (v["recreated"].as_u64(), v["tasks"].as_u64()),
        (Some(1), Some(2_500)),
        "{v}"
    );
}

#[test]
fn a_stream_whose_redis_rolls_back_again_and_again_keeps_every_file() {
    // Micro-batches of 20 while Redis is SIGKILLed every 1.5 s and restored from a checkpoint up to
    // a second old: every rollback loses the tail of what was enqueued, which is sent again from
    // where the restored job's tasks end.
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 50, 20, 200, 47);
    let out = dir.path().join("out.tsv");
    let o = run_ok(&[
        "stream",
        "--rate",
        "500",
        "--batch",
        "20",
        "--files",
        "2000",
        "-w",
        "2",
        "--json",
        "--durability",
        "rdb",
        "--checkpoint-ms",
        "1s",
        "--chaos-redis",
        "1500ms",
        "--out",
        &out.display().to_string(),
        &corpus.display().to_string(),
    ]);
    let cycle: Vec<&std::path::PathBuf> = files.iter().cycle().take(2_000).collect();
    assert_same_counts(&oracle_count(&cycle), &read_out_file(&out));
    let v = json(&o);
    assert!(v["redis_restarts"].as_u64().expect("restarts") >= 2, "{v}");
}

/// Keeps `url`'s Redis busy in a script for `ms` (it answers BUSY to everyone meanwhile).
fn busy_script(url: &str, ms: u64) {
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg(50)
        .query(&mut con)
        .expect("config set");
    let spin =
        "local function ms() local t = redis.call('TIME') return t[1] * 1000 + t[2] / 1000 end \
                local start = ms() while ms() - start < tonumber(ARGV[1]) do end return 1";
    let _: i64 = redis::cmd("EVAL")
        .arg(spin)
        .arg(0)
        .arg(ms)
        .query(&mut con)
        .expect("busy script");
}

#[test]
fn a_redis_busy_in_a_long_script_makes_nobody_give_up_or_lose_a_lease() {
    // BUSY means "later": workers and the driver wait it out, and leases do not run down while Redis
    // serves nobody (lease_clock), so nothing is re-delivered either.
    let server = redcount_server::RedisServer::start(Default::default()).expect("redis-server");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 200, 500, 4_000, 53);
    let out = dir.path().join("out.tsv");
    let driver = job()
        .workers(2)
        .json()
        .top(0)
        .arg("--no-pack")
        .lease("1s")
        .worker_slow("30ms")
        .flag("--speculate-factor", "0")
        .job("busy")
        .redis(&url)
        .out(&out)
        .input(&corpus)
        .spawn();
    std::thread::sleep(std::time::Duration::from_millis(1_000));
    for _ in 0..2 {
        // 2.5 lease lengths of BUSY, twice.
        busy_script(&url, 2_500);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let o = wait_success(driver, std::time::Duration::from_secs(90), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&o);
    eprintln!("busy: {v}");
    assert_eq!(
        v["tasks"].as_u64(),
        Some(200),
        "the job ran through the busy spells: {v}"
    );
    assert_eq!(
        (v["redelivered"].as_u64(), v["recomputed"].as_u64()),
        (Some(0), Some(0)),
        "a busy Redis took leases from live workers: {v}"
    );
}
