//! The `workers` aggregation called directly with synthetic `now`, against a real redis-server: a
//! commit stores partition blobs exactly once, a merge replaces exactly the partials it read and is
//! refused when stale, large blobs are staged in pieces, and a job is finished only once everything
//! is merged.

use std::path::PathBuf;
use std::time::Duration;

use redcount_count::partial;
use redcount_protocol::{
    CommitOutcome, Format, Job, JobSpec, Link, LinkOptions, MergePolicy, Merged, NewTask,
    INLINE_BLOB,
};
use redcount_server::{RedisServer, ServerOptions};

mod support;

use support::aggregation::{
    blobs, claim, counts, merge_all, request, served, setup, setup_with, LEASE, T0,
};

/// What every batch of the default path does: its commit and the next claim in one round trip.
#[test]
fn a_commit_sent_with_the_next_claim_counts_once_and_hands_out_the_next_task() {
    let (_server, mut job) = setup(3);
    let first = claim(&mut job, T0, "a");
    assert_eq!(first.len(), 1);
    let words = [("x", 2), ("y", 1)];
    let (outcome, next) = served(&mut job, T0 + 10)
        .commit_parts_and_claim(
            T0 + 10,
            "a",
            &[(first[0].clone(), 3)],
            &blobs(&words),
            &request("a"),
        )
        .expect("commit and claim");
    assert_eq!(outcome, CommitOutcome::Applied);
    let next = next.expect("small blobs go with the claim");
    assert_eq!(next.tasks.len(), 1, "{next:?}");
    let second = next.tasks[0].id.clone();
    assert_ne!(second, first[0]);
    assert!(!next.finished);

    // The same commit again (a reply lost, say) is a duplicate; its claim still hands out work.
    let (outcome, again) = served(&mut job, T0 + 20)
        .commit_parts_and_claim(
            T0 + 20,
            "a",
            &[(first[0].clone(), 3)],
            &blobs(&words),
            &request("a"),
        )
        .expect("commit and claim");
    assert_eq!(outcome, CommitOutcome::Duplicate);
    let third = again.expect("a claim").tasks;
    assert_eq!(third.len(), 1);
    assert!(third[0].id != first[0] && third[0].id != second);

    // A blob too large to go inline is staged: the commit goes alone and no claim is made.
    let many: Vec<String> = (0..150_000u32).map(|i| format!("w{i}")).collect();
    let refs: Vec<(&str, u64)> = many.iter().map(|w| (w.as_str(), 1)).collect();
    let large = blobs(&refs);
    assert!(large.iter().any(|(_, b)| b.len() > INLINE_BLOB));
    let (outcome, none) = served(&mut job, T0 + 30)
        .commit_parts_and_claim(T0 + 30, "a", &[(second, 150_000)], &large, &request("a"))
        .expect("commit alone");
    assert_eq!(outcome, CommitOutcome::Applied);
    assert!(none.is_none());

    // The last task with an empty claim: nothing left to hand out, the job finishes once merged.
    let (outcome, last) = served(&mut job, T0 + 40)
        .commit_parts_and_claim(
            T0 + 40,
            "a",
            &[(third[0].id.clone(), 1)],
            &blobs(&[("x", 1)]),
            &request("a"),
        )
        .expect("commit and claim");
    assert_eq!(outcome, CommitOutcome::Applied);
    assert!(last.expect("a claim").tasks.is_empty());
    let at_once = MergePolicy {
        min_parts: 1,
        min_age: Duration::ZERO,
        max_parts: 64,
    };
    assert!(merge_all(&mut job, T0 + 50, "m", &at_once) > 0);
    let s = job
        .status(T0 + 60, Duration::from_secs(10))
        .expect("status");
    assert!(s.finished, "{s:?}");
    let result = counts(&mut job);
    assert_eq!(result.len(), 2 + 150_000);
    assert!(result.contains(&("x".into(), 3)) && result.contains(&("y".into(), 1)));
    assert!(result.contains(&("w149999".into(), 1)));
}

#[test]
fn commits_store_partials_once_and_merges_fold_them_into_the_result() {
    let (_server, mut job) = setup(3);
    let at_once = MergePolicy {
        min_parts: 1,
        min_age: Duration::ZERO,
        max_parts: 64,
    };
    for (i, worker) in ["a", "b", "c"].iter().enumerate() {
        let ids = claim(&mut job, T0 + i as u64, worker);
        assert_eq!(ids.len(), 1);
        let words = [("x", 2), ("y", 1 + i as u64), ("z", 1)];
        let tasks = vec![(ids[0].clone(), 3 + i as u64)];
        assert_eq!(
            job.commit_parts(T0 + 10, worker, &tasks, &blobs(&words))
                .expect("commit"),
            CommitOutcome::Applied
        );
        // The same task committed again changes nothing.
        assert_eq!(
            job.commit_parts(T0 + 11, worker, &tasks, &blobs(&words))
                .expect("commit"),
            CommitOutcome::Duplicate
        );
    }
    let s = job
        .status(T0 + 20, Duration::from_secs(10))
        .expect("status");
    assert!(s.partials > 0 && !s.finished, "unmerged partials: {s:?}");
    assert!(merge_all(&mut job, T0 + 30, "a", &at_once) > 0);
    let s = job
        .status(T0 + 40, Duration::from_secs(10))
        .expect("status");
    assert_eq!((s.partials, s.distinct_words, s.words), (0, 3, 12));
    assert!(s.finished);
    assert_eq!(
        counts(&mut job),
        vec![("x".into(), 6), ("y".into(), 6), ("z".into(), 3)]
    );
    assert_eq!(
        job.top(2).expect("top"),
        vec![(b"x".to_vec(), 6), (b"y".to_vec(), 6)]
    );
}

#[test]
fn a_merge_replaces_exactly_what_it_read_and_a_stale_one_changes_nothing() {
    let (_server, mut job) = setup(2);
    let at_once = MergePolicy {
        min_parts: 1,
        min_age: Duration::ZERO,
        max_parts: 64,
    };
    // One word, so one partition.
    let ids = claim(&mut job, T0, "a");
    job.commit_parts(T0 + 1, "a", &[(ids[0].clone(), 1)], &blobs(&[("w", 1)]))
        .expect("commit");
    let first = served(&mut job, T0 + 2)
        .merge_claim(T0 + 2, "m1", LEASE, &at_once)
        .expect("claim")
        .expect("a partition is due");
    let (result, parts) = job
        .merge_inputs(&first)
        .expect("inputs")
        .expect("all there");
    assert_eq!(parts.len(), 1);
    // A second commit lands after the merge read its inputs: the merge must leave it alone.
    let ids = claim(&mut job, T0 + 3, "b");
    job.commit_parts(T0 + 4, "b", &[(ids[0].clone(), 1)], &blobs(&[("w", 5)]))
        .expect("commit");
    // While m1 holds the lease, nobody else gets the partition.
    assert!(served(&mut job, T0 + 5)
        .merge_claim(T0 + 5, "m2", LEASE, &at_once)
        .expect("claim")
        .is_none());
    let (blob, distinct) = partial::merge(&[&result, &parts[0]]).expect("merge");
    let (top, words) = partial::top_and_words(&blob, 10).expect("top");
    let merged = Merged {
        blob,
        distinct,
        words,
        top,
    };
    assert!(job
        .merge_commit(T0 + 6, "m1", &first, &merged)
        .expect("commit"));
    // The same merge again (a retry after a lost reply) is stale and changes nothing.
    assert!(!job
        .merge_commit(T0 + 7, "m1", &first, &merged)
        .expect("commit"));
    assert_eq!(counts(&mut job), vec![("w".into(), 1)]);
    // A merge whose lease expired and was taken over is refused too.
    let late = served(&mut job, T0 + 8)
        .merge_claim(T0 + 8, "m1", LEASE, &at_once)
        .expect("claim")
        .expect("the second partial is due");
    let (result, parts) = job.merge_inputs(&late).expect("inputs").expect("all there");
    let over = served(&mut job, T0 + 8 + 1001)
        .merge_claim(T0 + 8 + 1001, "m2", LEASE, &at_once)
        .expect("claim")
        .expect("an expired merge lease is free");
    assert_eq!(over.gen, late.gen);
    assert!(
        redcount_worker::merge::merge_claimed(&mut job, T0 + 1010, "m2", &over).expect("merge")
    );
    // Read now, the late merge's partial is gone (m2 folded it in): nothing to merge.
    assert!(job.merge_inputs(&late).expect("inputs").is_none());
    let (blob, distinct) = partial::merge(&[&result, &parts[0]]).expect("merge");
    let stale = Merged {
        blob,
        distinct,
        words: 5,
        top: Vec::new(),
    };
    assert!(!job
        .merge_commit(T0 + 1011, "m1", &late, &stale)
        .expect("commit"));
    assert_eq!(counts(&mut job), vec![("w".into(), 6)]);
    assert!(
        job.status(T0 + 1012, Duration::from_secs(10))
            .expect("status")
            .finished
    );
}

#[test]
fn large_blobs_are_staged_in_pieces_and_counted_exactly() {
    let (server, mut job) = setup(1);
    // About 1.5 MB of distinct words: well over the inline limit.
    let words: Vec<(String, u64)> = (0..150_000u64)
        .map(|i| (format!("id{i:07}"), i % 7 + 1))
        .collect();
    let refs: Vec<(&str, u64)> = words.iter().map(|(w, n)| (w.as_str(), *n)).collect();
    let parts = blobs(&refs);
    assert!(parts.iter().any(|(_, b)| b.len() > INLINE_BLOB));
    let ids = claim(&mut job, T0, "a");
    let total: u64 = words.iter().map(|(_, n)| n).sum();
    assert_eq!(
        job.commit_parts(T0 + 1, "a", &[(ids[0].clone(), total)], &parts)
            .expect("commit"),
        CommitOutcome::Applied
    );
    let policy = MergePolicy::default();
    assert!(merge_all(&mut job, T0 + 2, "a", &policy) > 0);
    let mut expected: Vec<(String, u64)> = words.clone();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    assert_eq!(counts(&mut job), expected);
    // No staged piece is left behind.
    let mut con = redis::Client::open(server.url())
        .expect("url")
        .get_connection()
        .expect("connect");
    let staged: Vec<String> = redis::cmd("KEYS")
        .arg("rc:{p}:stage:*")
        .query(&mut con)
        .expect("KEYS");
    assert!(staged.is_empty(), "{staged:?}");
}

#[test]
fn a_long_job_holds_only_its_unfinished_tasks_and_its_newest_records() {
    const HISTORY: u64 = 5;
    let (server, mut job) = setup_with(12, HISTORY);
    let mut con = redis::Client::open(server.url())
        .expect("url")
        .get_connection()
        .expect("connect");
    let xlen = |con: &mut redis::Connection, key: &str| -> u64 {
        redis::cmd("XLEN").arg(key).query(con).expect("XLEN")
    };
    // Worker b cannot open task 1 and hands it on to a (live): its `lacks` set goes with the task.
    job.renew(T0, "a", LEASE, &[]).expect("a is heard from");
    let first = claim(&mut job, T0, "b");
    assert_eq!(
        served(&mut job, T0)
            .defer(T0, "b", &first[0], 10 * LEASE)
            .expect("defer"),
        redcount_protocol::Deferral::Deferred
    );
    for i in 1..=12u64 {
        let now = T0 + i;
        let ids = claim(&mut job, now, "a");
        assert_eq!(ids.len(), 1, "task {i}");
        assert_eq!(
            job.commit_parts(now, "a", &[(ids[0].clone(), 1)], &blobs(&[("w", 1)]))
                .expect("commit"),
            CommitOutcome::Applied
        );
        assert_eq!(
            xlen(&mut con, "rc:{p}:tasks"),
            12 - i,
            "committed tasks leave the stream"
        );
        assert_eq!(xlen(&mut con, "rc:{p}:done"), i.min(HISTORY));
        let oldest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg("rc:{p}:done")
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query(&mut con)
            .expect("XRANGE");
        let want = i.saturating_sub(HISTORY) + 1;
        assert_eq!(
            oldest[0].0,
            format!("{want}-0"),
            "the newest {HISTORY} records are kept"
        );
    }
    let lacks: Vec<String> = redis::cmd("KEYS")
        .arg("rc:{p}:lacks:*")
        .query(&mut con)
        .expect("KEYS");
    assert!(lacks.is_empty(), "{lacks:?}");
    assert!(merge_all(&mut job, T0 + 100, "a", &MergePolicy::default()) > 0);
    let s = job
        .status(T0 + 200, Duration::from_secs(10))
        .expect("status");
    assert!(s.finished && s.done == 12, "{s:?}");
    assert_eq!(counts(&mut job), vec![("w".into(), 12)]);
}

/// `cmdstat_<name>`'s calls in `INFO commandstats` (0 when never called).
fn command_calls(con: &mut redis::Connection, name: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(con)
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_large_job_is_dropped_in_bounded_calls_by_name_never_by_scanning_the_keyspace() {
    const TASKS: u64 = 1_200;
    let (server, mut job) = setup(TASKS);
    let mut con = redis::Client::open(server.url())
        .expect("url")
        .get_connection()
        .expect("connect");
    // Another client's keys, which must stay.
    for chunk in 0..20 {
        let mut pipe = redis::pipe();
        for i in 0..1_000 {
            pipe.set(format!("other:{chunk}:{i}"), i).ignore();
        }
        pipe.query::<()>(&mut con).expect("SET");
    }
    // Two partials per commit, none merged: 2,400 keys, more than one call's batch.
    for i in 0..TASKS {
        let ids = claim(&mut job, T0 + i, "a");
        let words = [("x", 1), ("y", 1)];
        job.commit_parts(T0 + i, "a", &[(ids[0].clone(), 2)], &blobs(&words))
            .expect("commit");
    }
    // A worker killed while staging a blob leaves it behind.
    let keys = redcount_protocol::JobKeys::new("p").expect("keys");
    redis::cmd("FCALL")
        .arg("rc_stage")
        .arg(9)
        .arg(&keys.all()[..])
        .arg("*")
        .arg("killed")
        .arg("t1")
        .arg(0)
        .arg(0)
        .arg("piece")
        .query::<i64>(&mut con)
        .expect("stage");
    let job_keys = |con: &mut redis::Connection| -> Vec<String> {
        redis::cmd("KEYS").arg("rc:{p}:*").query(con).expect("KEYS")
    };
    let before = job_keys(&mut con);
    assert!(before.len() > 2_400, "{} keys", before.len());
    assert!(before.iter().any(|k| k.contains(":stage:killed:")));
    let (scans, fcalls) = (
        command_calls(&mut con, "scan"),
        command_calls(&mut con, "fcall"),
    );

    let deleted = job.drop_job(T0 + TASKS, true).expect("drop");
    assert_eq!(
        deleted as usize,
        before.len(),
        "every key of the job, counted once"
    );
    assert!(job_keys(&mut con).is_empty(), "{:?}", job_keys(&mut con));
    let others: Vec<String> = redis::cmd("KEYS")
        .arg("other:*")
        .query(&mut con)
        .expect("KEYS");
    assert_eq!(others.len(), 20_000, "another client's keys were touched");
    assert_eq!(
        command_calls(&mut con, "scan"),
        scans,
        "drop scanned the keyspace"
    );
    assert!(
        command_calls(&mut con, "fcall") - fcalls >= 3,
        "2,400 keys in batches of 1,000 take at least three calls"
    );
}

#[test]
fn merges_in_a_batch_fold_every_due_partition_and_skip_one_another_worker_holds() {
    // Twelve partitions, so one batch of 8 does not reach them all.
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut job = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "batch",
    )
    .expect("job");
    let spec = JobSpec {
        lease: redcount_protocol::Lease::new(LEASE).expect("a lease"),
        partitions: redcount_protocol::Partitions::clamped(12),
        ..JobSpec::default()
    };
    job.create(T0, "run1", &spec).expect("create");
    let task = NewTask {
        seq: 1,
        path: PathBuf::from("/data/1"),
        start: 0,
        end: 10,
        format: Format::Text,
        version: None,
        more: Vec::new(),
        due_ms: None,
    };
    job.enqueue(T0, &[task]).expect("enqueue");
    job.seal(T0, 1).expect("seal");
    let ids = claim(&mut job, T0, "w");
    let words: Vec<(String, u64)> = (0..200).map(|i| (format!("w{i}"), 1 + i % 7)).collect();
    let blobs = partial::partition_blobs(words.iter().map(|(w, n)| (w.as_bytes(), *n)), 12);
    let used = blobs.len() as u64;
    assert!(used > 9, "the words cover most partitions ({used})");
    job.commit_parts(T0 + 1, "w", &[(ids[0].clone(), 1000)], &blobs)
        .expect("commit");
    let at_once = MergePolicy {
        min_parts: 1,
        min_age: Duration::ZERO,
        max_parts: 64,
    };
    // Another worker holds the lowest partition's merge lease.
    let held = job
        .merge_claim(T0 + 2, "other", LEASE, &at_once)
        .expect("claim")
        .expect("a due partition");
    let (first, stale) =
        redcount_worker::merge::merge_due(&mut job, T0 + 2, "w", LEASE, &at_once, 8)
            .expect("batch");
    assert_eq!((first, stale), (8, 0), "a full batch, none of it stale");
    let (second, stale) =
        redcount_worker::merge::merge_due(&mut job, T0 + 2, "w", LEASE, &at_once, 8)
            .expect("batch");
    assert_eq!(
        (first + second, stale),
        (used - 1, 0),
        "every due partition but the held one"
    );
    // The held one is merged by its holder, and the result is every word, exactly once.
    assert!(
        redcount_worker::merge::merge_claimed(&mut job, T0 + 3, "other", &held).expect("merge")
    );
    let mut expected: Vec<(String, u64)> = words.clone();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.as_bytes().cmp(b.0.as_bytes())));
    assert_eq!(counts(&mut job), expected);
}
