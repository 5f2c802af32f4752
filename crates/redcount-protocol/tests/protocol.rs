//! The library's functions called directly with synthetic `now` values, against a real redis-server
//! this test starts: claim, renew, expired leases, duplicate and partial commits, dead letters,
//! termination. No sleeping: time is an argument.

use std::path::PathBuf;
use std::time::Duration;

use redcount_protocol::{
    Aggregation, ClaimRequest, CommitOutcome, Format, Job, JobKeys, JobSpec, Link, LinkOptions,
    NewTask, Status, STATUS_FIELDS,
};
use redcount_server::{RedisServer, ServerOptions};

const LEASE: u64 = 1_000;
const LEASE_D: Duration = Duration::from_millis(LEASE);
const T0: u64 = 1_700_000_000_000;

fn spec(max_attempts: u32) -> JobSpec {
    // These tests drive the ZINCRBY commit; partials have tests of their own (partials.rs).
    JobSpec {
        lease: LEASE_D,
        max_attempts,
        aggregation: Aggregation::Redis,
        ..JobSpec::default()
    }
}

fn task(seq: u64, bytes: u64) -> NewTask {
    NewTask {
        seq,
        path: PathBuf::from(format!("/data/f{seq}.txt")),
        start: 0,
        end: bytes,
        format: Format::Text,
        more: Vec::new(),
    }
}

/// A server and a job with `n` tasks of 100 bytes, sealed.
fn setup(n: u64, max_attempts: u32) -> (RedisServer, Job) {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut job = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "t",
    )
    .expect("job");
    assert_eq!(
        job.create(T0, "run1", &spec(max_attempts)).expect("create"),
        (true, "run1".to_string())
    );
    let tasks: Vec<_> = (1..=n).map(|s| task(s, 100)).collect();
    assert_eq!(job.enqueue(T0, &tasks).expect("enqueue"), (n, 0));
    assert_eq!(job.seal(T0, n).expect("seal"), (true, n));
    (server, job)
}

fn req(
    worker: &str,
    max_tasks: u64,
    max_bytes: u64,
    max_attempts: u32,
    live_window_ms: u64,
) -> ClaimRequest<'_> {
    ClaimRequest {
        worker,
        lease: LEASE_D,
        max_tasks,
        max_bytes,
        max_attempts,
        live_window: Duration::from_millis(live_window_ms),
        speculate_factor: 0.0,
        speculate_min: Duration::ZERO,
    }
}

fn claim(job: &mut Job, now: u64, worker: &str, max_tasks: u64) -> Vec<String> {
    let c = job
        .claim(now, &req(worker, max_tasks, u64::MAX / 4, 3, 10 * LEASE))
        .expect("claim");
    c.tasks.into_iter().map(|t| t.id).collect()
}

fn commit(
    job: &mut Job,
    now: u64,
    worker: &str,
    ids: &[&str],
    words: &[(&[u8], u64)],
) -> CommitOutcome {
    let tasks: Vec<(String, u64)> = ids.iter().map(|id| (id.to_string(), 1)).collect();
    job.commit(now, worker, &tasks, words.iter().copied())
        .expect("commit")
}

fn status(job: &mut Job, now: u64) -> Status {
    job.status(now, 10 * LEASE_D).expect("status")
}

fn count_of(job: &mut Job, word: &str) -> u64 {
    let all = job.all_counts().expect("counts");
    all.iter()
        .find(|(w, _)| w == word.as_bytes())
        .map(|(_, n)| *n)
        .unwrap_or(0)
}

#[test]
fn create_and_enqueue_are_idempotent() {
    let (_server, mut job) = setup(3, 3);
    assert_eq!(
        job.create(T0 + 5, "other", &spec(3)).expect("create again"),
        (false, "run1".to_string())
    );
    // A driver re-sending after a crash: known tasks are skipped, nothing is added twice.
    let again: Vec<_> = (1..=3).map(|s| task(s, 100)).collect();
    assert_eq!(job.enqueue(T0 + 5, &again).expect("re-enqueue"), (0, 3));
    let s = status(&mut job, T0 + 5);
    assert_eq!((s.tasks, s.bytes), (3, 300));
    // New tasks after the seal are refused, with the key named.
    let err = job.enqueue(T0 + 6, &[task(4, 1)]).expect_err("sealed");
    assert!(err.to_string().contains("sealed"), "{err}");
    // A seal that expects another number of tasks reports what is there.
    assert_eq!(job.seal(T0 + 7, 5).expect("seal"), (false, 3));
}

#[test]
fn claim_gives_each_task_to_one_worker_with_a_lease() {
    let (_server, mut job) = setup(4, 3);
    let a = claim(&mut job, T0, "a", 100);
    // Fair share: with one live worker, at most half of what is undelivered.
    assert_eq!(a, vec!["1-0", "2-0"]);
    let b = claim(&mut job, T0 + 1, "b", 100);
    assert_eq!(
        b,
        vec!["3-0"],
        "two live workers: a quarter of the 2 left, rounded up"
    );
    let s = status(&mut job, T0 + 1);
    assert_eq!((s.delivered, s.in_flight, s.live_workers), (3, 3, 2));
    // Before any lease expires nobody gets a delivered task again.
    let c = claim(&mut job, T0 + LEASE - 1, "c", 100);
    assert_eq!(c, vec!["4-0"]);
    assert!(claim(&mut job, T0 + LEASE - 1, "c", 100).is_empty());
}

#[test]
fn max_bytes_limits_a_claim_but_one_task_always_fits() {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut job = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "b",
    )
    .expect("job");
    job.create(T0, "r", &spec(3)).expect("create");
    let tasks: Vec<_> = (1..=20).map(|s| task(s, 1000)).collect();
    job.enqueue(T0, &tasks).expect("enqueue");
    let got = job
        .claim(T0, &req("w", 100, 2500, 3, LEASE))
        .expect("claim");
    assert_eq!(got.tasks.len(), 2, "2 x 1000 bytes fit in 2500");
    let got = job.claim(T0, &req("w", 100, 10, 3, LEASE)).expect("claim");
    assert_eq!(
        got.tasks.len(),
        1,
        "a task larger than the budget still goes alone"
    );
}

#[test]
fn an_expired_lease_is_redelivered_and_renewal_keeps_it() {
    let (_server, mut job) = setup(1, 3);
    assert_eq!(claim(&mut job, T0, "a", 1), vec!["1-0"]);
    // a renews at T0 + 800: its lease now ends at T0 + 1800.
    assert_eq!(
        job.renew(T0 + 800, "a", LEASE_D, &["1-0".into()])
            .expect("renew"),
        vec!["1-0"]
    );
    assert!(
        claim(&mut job, T0 + 1500, "b", 1).is_empty(),
        "renewed lease still valid"
    );
    // Only the holder may renew.
    assert!(job
        .renew(T0 + 1500, "b", LEASE_D, &["1-0".into()])
        .expect("renew")
        .is_empty());
    let stolen = job
        .claim(T0 + 1801, &req("b", 1, 1 << 20, 3, LEASE))
        .expect("claim");
    assert_eq!(stolen.tasks.len(), 1);
    assert_eq!(stolen.tasks[0].attempts, 2);
    assert_eq!(status(&mut job, T0 + 1801).redelivered, 1);
    // a lost the task: its renewal no longer holds it.
    assert!(job
        .renew(T0 + 1900, "a", LEASE_D, &["1-0".into()])
        .expect("renew")
        .is_empty());
}

#[test]
fn a_task_committed_twice_is_counted_once() {
    let (_server, mut job) = setup(1, 3);
    claim(&mut job, T0, "a", 1);
    claim(&mut job, T0 + LEASE + 1, "b", 1);
    let words: &[(&[u8], u64)] = &[(b"x", 2), (b"y", 1)];
    assert_eq!(
        commit(&mut job, T0 + LEASE + 5, "b", &["1-0"], words),
        CommitOutcome::Applied
    );
    assert_eq!(
        commit(&mut job, T0 + LEASE + 6, "a", &["1-0"], words),
        CommitOutcome::Duplicate
    );
    assert_eq!(count_of(&mut job, "x"), 2);
    let s = status(&mut job, T0 + LEASE + 6);
    assert_eq!((s.done, s.recomputed, s.duplicates, s.words), (1, 1, 1, 3));
    assert!(s.finished);
    let done = job.done_records().expect("done");
    assert_eq!(done.len(), 1, "only the commit that counted is recorded");
    assert_eq!(
        (
            done[0].worker.as_str(),
            done[0].attempts,
            done[0].committed_ms
        ),
        ("b", 2, T0 + LEASE + 5)
    );
}

#[test]
fn a_partly_stale_batch_changes_nothing() {
    let (_server, mut job) = setup(2, 3);
    let a = claim(&mut job, T0, "a", 2);
    assert_eq!(a.len(), 1, "fair share of 2 for one worker is 1");
    let a2 = claim(&mut job, T0, "a", 2);
    assert_eq!(a2, vec!["2-0"]);
    // Task 1 expires (a renews only task 2); b takes it over and commits it.
    job.renew(T0 + 900, "a", LEASE_D, &["2-0".into()])
        .expect("renew");
    assert_eq!(claim(&mut job, T0 + LEASE + 1, "b", 5), vec!["1-0"]);
    assert_eq!(
        commit(&mut job, T0 + LEASE + 2, "b", &["1-0"], &[(b"w", 1)]),
        CommitOutcome::Applied
    );
    // a's batch of both tasks is refused whole, naming the stale one.
    let out = commit(&mut job, T0 + LEASE + 3, "a", &["1-0", "2-0"], &[(b"w", 2)]);
    assert_eq!(out, CommitOutcome::Partial(vec!["1-0".into()]));
    assert_eq!(count_of(&mut job, "w"), 1);
    assert_eq!(
        commit(&mut job, T0 + LEASE + 4, "a", &["2-0"], &[(b"w", 1)]),
        CommitOutcome::Applied
    );
    assert_eq!(count_of(&mut job, "w"), 2);
    assert!(status(&mut job, T0 + LEASE + 4).finished);
}

#[test]
fn a_task_that_keeps_expiring_is_given_up() {
    let (_server, mut job) = setup(1, 2);
    let mut now = T0;
    for attempt in 1..=2 {
        let c = job
            .claim(now, &req("w", 1, 1 << 20, 2, LEASE))
            .expect("claim");
        assert_eq!(c.tasks[0].attempts, attempt);
        now += LEASE + 1;
    }
    let c = job
        .claim(now, &req("w2", 1, 1 << 20, 2, LEASE))
        .expect("claim");
    assert!(c.tasks.is_empty(), "given up after max_attempts");
    assert!(c.finished, "a job whose last task is dead is finished");
    let dead = job.dead_tasks().expect("dead");
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].error.contains("gave up after 2 attempts"),
        "{}",
        dead[0].error
    );
    assert_eq!(dead[0].path, "/data/f1.txt");
    let s = status(&mut job, now);
    assert_eq!((s.dead, s.in_flight, s.done), (1, 0, 0));
}

#[test]
fn a_failed_input_goes_to_the_dead_stream_with_its_error() {
    let (_server, mut job) = setup(1, 3);
    claim(&mut job, T0, "w", 1);
    assert!(job
        .fail(T0 + 1, "w", "1-0", "f1.txt: no such file or directory")
        .expect("fail"));
    assert!(
        !job.fail(T0 + 2, "w", "1-0", "again").expect("fail twice"),
        "second report is a no-op"
    );
    let dead = job.dead_tasks().expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, "f1.txt: no such file or directory");
    assert!(status(&mut job, T0 + 2).finished);
}

#[test]
fn finished_needs_seal_delivery_and_commits_not_just_an_empty_pending_list() {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut job = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "f",
    )
    .expect("job");
    job.create(T0, "r", &spec(3)).expect("create");
    job.enqueue(T0, &[task(1, 10), task(2, 10)])
        .expect("enqueue");
    // Nothing pending, but nothing delivered either: the original's "done" test would say finished.
    let s = status(&mut job, T0);
    assert_eq!(s.in_flight, 0);
    assert!(!s.finished);
    job.seal(T0, 2).expect("seal");
    assert!(!status(&mut job, T0).finished, "sealed but undelivered");
    let c = job
        .claim(T0, &req("w", 10, 1 << 20, 3, LEASE))
        .expect("claim");
    let c2 = job
        .claim(T0, &req("w", 10, 1 << 20, 3, LEASE))
        .expect("claim");
    let ids: Vec<String> = c
        .tasks
        .iter()
        .chain(&c2.tasks)
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(
        !status(&mut job, T0).finished,
        "delivered but not committed"
    );
    let tasks: Vec<(String, u64)> = ids.into_iter().map(|id| (id, 0)).collect();
    let none: [(&[u8], u64); 0] = [];
    assert_eq!(
        job.commit(T0 + 1, "w", &tasks, none.into_iter())
            .expect("commit"),
        CommitOutcome::Applied
    );
    assert!(status(&mut job, T0 + 1).finished);
}

#[test]
fn a_bad_commit_is_refused_before_any_write() {
    let (_server, mut job) = setup(1, 3);
    claim(&mut job, T0, "w", 1);
    let tasks = vec![("1-0".to_string(), 2)];
    let bad: [(&[u8], u64); 2] = [(b"ok", 1), (b"zero", 0)];
    let err = job
        .commit(T0 + 1, "w", &tasks, bad.into_iter())
        .expect_err("zero count");
    assert!(err.to_string().contains("positive"), "{err}");
    assert!(
        job.all_counts().expect("counts").is_empty(),
        "nothing was applied"
    );
    assert_eq!(
        status(&mut job, T0 + 1).in_flight,
        1,
        "the task is still pending"
    );
}

#[test]
fn top_breaks_ties_by_word_bytes_ascending() {
    let (_server, mut job) = setup(1, 3);
    claim(&mut job, T0, "w", 1);
    let words: &[(&[u8], u64)] = &[(b"b", 2), (b"a", 2), (b"c", 2), (b"z", 5), (b"y", 1)];
    commit(&mut job, T0 + 1, "w", &["1-0"], words);
    let top = job.top(3).expect("top");
    let got: Vec<(&[u8], u64)> = top.iter().map(|(w, n)| (&w[..], *n)).collect();
    assert_eq!(got, vec![(&b"z"[..], 5), (&b"a"[..], 2), (&b"b"[..], 2)]);
    assert_eq!(job.all_counts().expect("all").len(), 5);
}

#[test]
fn a_server_that_lost_the_library_gets_it_back() {
    let (server, mut job) = setup(1, 3);
    let client = redis::Client::open(server.url()).expect("url");
    let mut con = client.get_connection().expect("connect");
    redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query::<()>(&mut con)
        .expect("flush functions");
    assert_eq!(
        status(&mut job, T0).tasks,
        1,
        "status works after the library was reloaded"
    );
}

#[test]
fn an_unknown_job_is_reported_by_name() {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut job = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "ghost",
    )
    .expect("job");
    let err = job.status(T0, LEASE_D).expect_err("no job");
    assert!(err.to_string().contains("no job 'ghost'"), "{err}");
}

#[test]
fn an_idle_worker_takes_over_a_straggling_task_speculatively() {
    let (_server, mut job) = setup(12, 3);
    let mut now = T0;
    // Eleven tasks take 10 ms each, one at a time, by two healthy workers.
    for i in 0..11 {
        let worker = if i % 2 == 0 { "fast" } else { "idle" };
        let ids = claim(&mut job, now, worker, 1);
        assert_eq!(ids.len(), 1);
        let id = ids[0].as_str();
        assert_eq!(
            commit(&mut job, now + 10, worker, &[id], &[(b"w", 1)]),
            CommitOutcome::Applied
        );
        now += 20;
    }
    let slow = claim(&mut job, now, "slow", 1);
    assert_eq!(slow, vec!["12-0"]);
    let mut spec = req("idle", 10, 1 << 20, 3, 10 * LEASE);
    spec.speculate_factor = 3.0;
    // 25 ms is not 3 x the p90 (10 ms) yet.
    assert!(job.claim(now + 25, &spec).expect("claim").tasks.is_empty());
    let taken = job.claim(now + 31, &spec).expect("claim").tasks;
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].id.as_str(), taken[0].attempts), ("12-0", 2));
    assert_eq!(status(&mut job, now + 31).speculated, 1);
    // The speculative copy is not handed out again to its new holder, and the first commit wins.
    assert!(job.claim(now + 500, &spec).expect("claim").tasks.is_empty());
    assert_eq!(
        commit(&mut job, now + 40, "idle", &["12-0"], &[(b"w", 1)]),
        CommitOutcome::Applied
    );
    assert_eq!(
        commit(&mut job, now + 900, "slow", &["12-0"], &[(b"w", 1)]),
        CommitOutcome::Duplicate
    );
    assert_eq!(count_of(&mut job, "w"), 12);
    let s = status(&mut job, now + 900);
    assert!(s.finished);
    assert_eq!((s.recomputed, s.duplicates), (1, 1));
}

#[test]
fn events_are_noted_in_order() {
    let (_server, mut job) = setup(1, 3);
    assert_eq!(
        job.event(T0 + 5, "kill-worker", "pid 42").expect("event"),
        1
    );
    assert_eq!(
        job.event(T0 + 9, "straggler", "factor 4").expect("event"),
        2
    );
    let events = job.events().expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(
        (
            events[0].at_ms,
            events[0].kind.as_str(),
            events[0].detail.as_str()
        ),
        (T0 + 5, "kill-worker", "pid 42")
    );
    assert_eq!(events[1].kind, "straggler");
}

#[test]
fn a_slow_worker_does_not_take_work_from_faster_ones() {
    let (_server, mut job) = setup(14, 3);
    let mut now = T0;
    // "fast" and "idle" commit five 10 ms tasks each, "slow" three 100 ms tasks.
    for (worker, took, n) in [("fast", 10, 5), ("idle", 10, 5), ("slow", 100, 3)] {
        for _ in 0..n {
            let ids = claim(&mut job, now, worker, 1);
            assert_eq!(
                commit(
                    &mut job,
                    now + took,
                    worker,
                    &[ids[0].as_str()],
                    &[(b"w", 1)]
                ),
                CommitOutcome::Applied
            );
            now += took + 1;
        }
    }
    assert_eq!(claim(&mut job, now, "fast", 1), vec!["14-0"]);
    let mut spec = req("slow", 10, 1 << 20, 3, 10 * LEASE);
    spec.speculate_factor = 3.0;
    // At +500 ms the task is past 3 x p90 (300 ms) but its 1 s lease has not run out.
    assert!(
        job.claim(now + 500, &spec).expect("claim").tasks.is_empty(),
        "the straggler takes nothing"
    );
    spec.worker = "idle";
    assert_eq!(
        job.claim(now + 500, &spec).expect("claim").tasks.len(),
        1,
        "a healthy idle worker does"
    );
}

#[test]
fn a_commit_naming_a_task_twice_is_refused() {
    let (_server, mut job) = setup(1, 3);
    claim(&mut job, T0, "w", 1);
    let tasks = vec![("1-0".to_string(), 1), ("1-0".to_string(), 1)];
    let words: [(&[u8], u64); 1] = [(b"x", 2)];
    let err = job
        .commit(T0 + 1, "w", &tasks, words.into_iter())
        .expect_err("twice");
    assert!(err.to_string().contains("appears twice"), "{err}");
    assert!(job.all_counts().expect("counts").is_empty());
    assert_eq!(status(&mut job, T0 + 1).done, 0);
}

/// Runs the same scripted calls (every function, including expiry, speculation, a dead letter and a
/// duplicate commit) on a fresh server and returns its `DEBUG DIGEST`.
fn scripted_digest() -> String {
    let options = ServerOptions {
        dir: None,
        config: vec!["enable-debug-command local".into()],
    };
    let server = RedisServer::start(options).expect("redis-server starts");
    let mut job = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "d",
    )
    .expect("job");
    job.create(T0, "run", &spec(2)).expect("create");
    job.enqueue(T0, &(1..=14).map(|s| task(s, 100)).collect::<Vec<_>>())
        .expect("enqueue");
    job.seal(T0, 14).expect("seal");
    let mut now = T0;
    for i in 0..11 {
        let worker = if i % 2 == 0 { "a" } else { "b" };
        let ids = claim(&mut job, now, worker, 1);
        commit(
            &mut job,
            now + 10,
            worker,
            &[ids[0].as_str()],
            &[(b"w", 1), (b"v", 2)],
        );
        now += 20;
    }
    claim(&mut job, now, "slow", 1);
    let mut spec_req = req("a", 1, 1 << 20, 2, 10 * LEASE);
    spec_req.speculate_factor = 3.0;
    job.claim(now + 100, &spec_req).expect("speculate");
    job.renew(now + 200, "a", LEASE_D, &["12-0".into()])
        .expect("renew");
    commit(&mut job, now + 300, "slow", &["12-0"], &[(b"w", 1)]);
    commit(&mut job, now + 301, "a", &["12-0"], &[(b"w", 1)]);
    let ids = claim(&mut job, now + 400, "b", 1);
    job.fail(now + 401, "b", &ids[0], "unreadable")
        .expect("fail");
    claim(&mut job, now + 500, "c", 1);
    claim(&mut job, now + 500 + 2 * LEASE, "d", 1);
    claim(&mut job, now + 500 + 4 * LEASE, "e", 1);
    job.event(now + 600, "kill-worker", "pid 1").expect("event");
    job.status(now + 700, LEASE_D).expect("status");
    let client = redis::Client::open(server.url()).expect("url");
    let mut con = client.get_connection().expect("connect");
    let digest: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(&mut con)
        .expect("DEBUG DIGEST");
    // DEBUG DIGEST leaves out when each pending entry was delivered; XINFO STREAM FULL shows it.
    let info: redis::Value = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&JobKeys::new(job.name()).expect("job name").tasks)
        .arg("FULL")
        .query(&mut con)
        .expect("XINFO");
    format!(
        "{digest} {:?}",
        field(
            &field(&info, "groups").unwrap_or(redis::Value::Nil),
            "pending"
        )
    )
}

/// The value after `name` in a RESP2 field/value array (or in the first element of an array of those).
fn field(value: &redis::Value, name: &str) -> Option<redis::Value> {
    let redis::Value::Array(items) = value else {
        return None;
    };
    if let Some(redis::Value::Array(_)) = items.first() {
        return field(&items[0], name);
    }
    items.chunks(2).find_map(|kv| match kv {
        [redis::Value::BulkString(k), v] if k == name.as_bytes() => Some(v.clone()),
        _ => None,
    })
}

#[test]
fn the_library_is_deterministic_same_calls_give_the_same_dataset() {
    // Raft replicas and restored checkpoints re-execute calls: the dataset, delivery times of the
    // pending entries included, must depend only on the calls and their arguments.
    let first = scripted_digest();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let second = scripted_digest();
    assert!(
        !first.starts_with(&"0".repeat(40)),
        "the dataset is not empty"
    );
    assert!(
        first.contains("Some(") && first.contains("-0"),
        "pending entries are compared: {first}"
    );
    assert_eq!(first, second);
}

/// A claim retried with the same token (its reply was lost) gets the same tasks back, still held,
/// instead of new ones; a new token claims new tasks.
#[test]
fn a_retried_claim_gets_the_same_tasks() {
    let (server, _job) = setup(4, 3);
    let mut con = redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("connect");
    let keys = redcount_protocol::JobKeys::new("t").expect("keys");
    let call = |con: &mut redis::Connection, now: u64, token: &str| -> Vec<String> {
        let reply: Vec<redis::Value> = redis::cmd("FCALL")
            .arg("rc_claim")
            .arg(keys.all().len())
            .arg(&keys.all()[..])
            .arg(now)
            .arg("w1")
            .arg(LEASE)
            .arg(2)
            .arg(1 << 30)
            .arg(3)
            .arg(10 * LEASE)
            .arg(0)
            .arg(0)
            .arg(token)
            .query(con)
            .expect("claim");
        reply[4..]
            .iter()
            .map(|t| match t {
                redis::Value::Array(f) => match &f[0] {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    other => panic!("task id {other:?}"),
                },
                other => panic!("task {other:?}"),
            })
            .collect()
    };
    let first = call(&mut con, T0 + 1, "a.1");
    assert!(!first.is_empty());
    assert_eq!(
        call(&mut con, T0 + 2, "a.1"),
        first,
        "retry returns the same tasks"
    );
    let next = call(&mut con, T0 + 3, "a.2");
    assert!(!next.is_empty());
    assert!(
        next.iter().all(|id| !first.contains(id)),
        "a new claim gets new tasks"
    );
}

#[test]
fn status_replies_with_exactly_the_listed_fields_in_order() {
    let (server, _job) = setup(1, 3);
    let mut con = redis::Client::open(server.url())
        .expect("url")
        .get_connection()
        .expect("connect");
    let keys = JobKeys::new("t").expect("job name");
    let reply: Vec<redis::Value> = redis::cmd("FCALL_RO")
        .arg("rc_status")
        .arg(keys.all().len())
        .arg(&keys.all()[..])
        .arg(T0)
        .arg(LEASE)
        .query(&mut con)
        .expect("rc_status");
    let names: Vec<String> = reply
        .chunks(2)
        .map(|pair| redis::from_redis_value(pair[0].clone()).expect("a field name"))
        .collect();
    assert_eq!(names, STATUS_FIELDS);
}
