//! The library's functions called directly with synthetic `now` values, against a real redis-server
//! this test starts: claim, renew, expired leases, duplicate and partial commits, dead letters,
//! termination. No sleeping: time is an argument.

use std::path::PathBuf;
use std::time::Duration;

use redcount_protocol::{
    Aggregation, ClaimRequest, CommitOutcome, Deferral, Enqueued, Format, Job, JobKeys, JobSpec,
    Link, LinkOptions, NewTask, Now, Piece, Status, STATUS_FIELDS,
};
use redcount_server::{RedisServer, ServerOptions};

mod support;

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
        version: None,
        more: Vec::new(),
        due_ms: None,
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
    assert_eq!(
        job.enqueue(T0, &tasks).expect("enqueue"),
        Enqueued::Added {
            added: n,
            skipped: 0
        }
    );
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
    let c = served(job, now)
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
    assert_eq!(
        job.enqueue(T0 + 5, &again).expect("re-enqueue"),
        Enqueued::Added {
            added: 0,
            skipped: 3
        }
    );
    let s = status(&mut job, T0 + 5);
    assert_eq!((s.tasks, s.bytes), (3, 300));
    // New tasks after the seal are refused, with the key named.
    let err = job.enqueue(T0 + 6, &[task(4, 1)]).expect_err("sealed");
    assert!(err.to_string().contains("sealed"), "{err}");
    // A seal that expects another number of tasks reports what is there.
    assert_eq!(job.seal(T0 + 7, 5).expect("seal"), (false, 3));
}

#[test]
fn a_task_comes_back_with_its_ranges_and_their_versions_as_enqueued() {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut job = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "v",
    )
    .expect("job");
    job.create(T0, "run1", &spec(3)).expect("create");
    let etag = |s: &str| Some(format!("\"{s}\""));
    let sent = vec![
        NewTask {
            version: etag("a1"),
            path: PathBuf::from("s3://bucket/a.txt"),
            more: vec![
                Piece {
                    path: PathBuf::from("s3://bucket/b.csv"),
                    start: 0,
                    end: 7,
                    format: Format::Csv,
                    version: etag("b2-3"),
                },
                Piece {
                    path: PathBuf::from("/local/c.txt"),
                    start: 0,
                    end: 9,
                    format: Format::Text,
                    version: None,
                },
            ],
            ..task(1, 100)
        },
        task(2, 50),
    ];
    job.enqueue(T0, &sent).expect("enqueue");
    // Fair share: one at a time for one worker.
    let mut got = Vec::new();
    for _ in 0..2 {
        got.extend(
            job.claim(T0, &req("w", 10, 1 << 30, 3, 10_000))
                .expect("claim")
                .tasks,
        );
    }
    assert_eq!(got.len(), 2);
    for (task, sent) in got.iter().zip(&sent) {
        assert_eq!(
            (&task.path, task.start, task.end, &task.version, &task.more),
            (&sent.path, sent.start, sent.end, &sent.version, &sent.more)
        );
    }
    assert_eq!(got[0].len(), 116);

    // The dashboard's view of the worker: what it holds, by input, not by task id.
    let views = job.workers(T0).expect("workers");
    let holds: Vec<(&str, &str, u64)> = views[0]
        .holds
        .iter()
        .map(|h| (h.task.as_str(), h.input.as_str(), h.files))
        .collect();
    assert_eq!(
        holds,
        [("1-0", "s3://bucket/a.txt", 3), ("2-0", "/data/f2.txt", 1)]
    );
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
    let got = served(&mut job, T0)
        .claim(T0, &req("w", 100, 2500, 3, LEASE))
        .expect("claim");
    assert_eq!(got.tasks.len(), 2, "2 x 1000 bytes fit in 2500");
    let got = served(&mut job, T0)
        .claim(T0, &req("w", 100, 10, 3, LEASE))
        .expect("claim");
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
        served(&mut job, T0 + 800)
            .renew(T0 + 800, "a", LEASE_D, &["1-0".into()])
            .expect("renew"),
        vec!["1-0"]
    );
    assert!(
        claim(&mut job, T0 + 1500, "b", 1).is_empty(),
        "renewed lease still valid"
    );
    // Only the holder may renew.
    assert!(served(&mut job, T0 + 1500)
        .renew(T0 + 1500, "b", LEASE_D, &["1-0".into()])
        .expect("renew")
        .is_empty());
    let stolen = served(&mut job, T0 + 1801)
        .claim(T0 + 1801, &req("b", 1, 1 << 20, 3, LEASE))
        .expect("claim");
    assert_eq!(stolen.tasks.len(), 1);
    assert_eq!(stolen.tasks[0].attempts, 2);
    assert_eq!(status(&mut job, T0 + 1801).redelivered, 1);
    // a lost the task: its renewal no longer holds it.
    assert!(served(&mut job, T0 + 1900)
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
    served(&mut job, T0 + 900)
        .renew(T0 + 900, "a", LEASE_D, &["2-0".into()])
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
fn a_task_that_keeps_killing_its_worker_alone_is_given_up() {
    let (_server, mut job) = setup(1, 2);
    let mut now = T0;
    // Delivery 1 is an ordinary one (it could have been one of a batch): its expiry charges nothing.
    // Deliveries 2 and 3 hand it out alone, and each expiry then charges it.
    for attempt in 1..=3 {
        let c = served(&mut job, now)
            .claim(now, &req("w", 1, 1 << 20, 2, LEASE))
            .expect("claim");
        assert_eq!(c.tasks[0].attempts, attempt);
        assert_eq!(c.tasks[0].solo, attempt > 1);
        now += LEASE + 1;
    }
    let c = served(&mut job, now)
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
fn a_dead_workers_batch_is_handed_out_one_task_at_a_time_and_charged_nothing() {
    let (_server, mut job) = setup(8, 1);
    let batch = claim(&mut job, T0, "a", 100);
    assert_eq!(batch, vec!["1-0", "2-0", "3-0", "4-0"], "half of 8");
    // a dies. With max_attempts 1, a charge would bury a task at once: none of its batch is buried.
    let mut now = T0 + LEASE + 1;
    let mut redelivered = Vec::new();
    for _ in 0..4 {
        let c = served(&mut job, now)
            .claim(now, &req("b", 100, u64::MAX / 4, 1, 10 * LEASE))
            .expect("claim");
        assert_eq!(
            c.tasks.len(),
            1,
            "a re-delivered task comes alone, nothing beside it"
        );
        assert!(c.tasks[0].solo && c.tasks[0].attempts == 2);
        let id = c.tasks[0].id.clone();
        assert_eq!(
            commit(&mut job, now + 1, "b", &[&id], &[(b"w", 1)]),
            CommitOutcome::Applied
        );
        redelivered.push(id);
        now += 2;
    }
    assert_eq!(redelivered, batch, "in lease order");
    assert_eq!(status(&mut job, now).dead, 0);
    // Then new tasks again (a fair share: one of the 4 left for 2 live workers).
    assert_eq!(claim(&mut job, now, "b", 100), vec!["5-0"]);
    // b dies: 5-0 goes alone to c, which dies too: with max_attempts 1 that one charge buries it.
    let mut now = now + 1;
    let solo = loop {
        now += LEASE + 1;
        let c = served(&mut job, now)
            .claim(now, &req("c", 100, u64::MAX / 4, 1, 10 * LEASE))
            .expect("claim");
        if c.tasks.first().is_some_and(|t| t.solo) {
            break c.tasks[0].id.clone();
        }
    };
    assert_eq!(solo, "5-0");
    now += LEASE + 1;
    let c = served(&mut job, now)
        .claim(now, &req("d", 100, u64::MAX / 4, 1, 10 * LEASE))
        .expect("claim");
    assert_eq!(c.tasks.len(), 1);
    assert_eq!(c.tasks[0].id, "6-0", "5-0 was buried: its solo holder died");
    let dead = job.dead_tasks().expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].task, "5-0");
    assert!(
        dead[0].error.contains("counting it alone"),
        "{}",
        dead[0].error
    );
}

#[test]
fn a_quiet_coordinator_pauses_leases_but_a_dead_worker_still_loses_its_tasks() {
    let (_server, mut job) = setup(2, 3);
    assert_eq!(claim(&mut job, T0, "a", 1), vec!["1-0"]);
    assert_eq!(claim(&mut job, T0 + 100, "b", 1), vec!["2-0"]);
    // Nothing is served for 10 leases (a failover, a restart, a long busy script): nobody could
    // renew. When calls come again, the leases have not run down meanwhile.
    let back = T0 + 100 + 10 * LEASE;
    let c = job
        .claim(back, &req("b", 1, 1 << 20, 3, 10 * LEASE))
        .expect("claim");
    assert!(
        c.tasks.is_empty(),
        "no lease expired over the quiet stretch"
    );
    let wait = c.next_expiry.expect("a lease is running");
    assert!(
        wait > Duration::ZERO && wait < LEASE_D,
        "the wait is relative and within a lease: {wait:?}"
    );
    // b renews and lives on; a is dead: its task is taken over within one more lease.
    let mut now = back;
    let taken = loop {
        now += LEASE / 4;
        assert!(now < back + 2 * LEASE, "a's task was never released");
        served(&mut job, now)
            .renew(now, "b", LEASE_D, &["2-0".into()])
            .expect("renew");
        let c = job
            .claim(now, &req("c", 1, 1 << 20, 3, 10 * LEASE))
            .expect("claim");
        if let Some(t) = c.tasks.first() {
            break t.id.clone();
        }
    };
    assert_eq!(taken, "1-0");
    let s = status(&mut job, now);
    assert_eq!((s.redelivered, s.in_flight), (1, 2));
}

#[test]
fn a_workers_clock_never_matters() {
    let (_server, mut job) = setup(3, 3);
    // Coordinator time (`*`): whatever this process's clock says.
    let c = job
        .claim(Now::Coordinator, &req("w", 1, 1 << 20, 3, 10 * LEASE))
        .expect("claim");
    assert_eq!(c.tasks.len(), 1);
    let injected = c.tasks[0].injected_ms;
    assert_eq!(injected, T0, "pinned at enqueue");
    let wait = c.next_expiry.expect("leased");
    assert!(wait <= LEASE_D, "{wait:?}");
    // Bad pinned times are refused before anything is written.
    for bad in ["-5", "1e15", "10000000000000"] {
        let err = job
            .query::<redis::Value>(
                "FCALL rc_renew",
                redis::cmd("FCALL")
                    .arg("rc_renew")
                    .arg(JobKeys::new("t").expect("keys").all().len())
                    .arg(&JobKeys::new("t").expect("keys").all()[..])
                    .arg(bad)
                    .arg("w")
                    .arg(LEASE),
            )
            .expect_err("refused");
        assert!(err.to_string().contains("now must be"), "{bad}: {err}");
    }
}

#[test]
fn an_enqueue_that_would_leave_a_hole_is_refused() {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut job = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "h",
    )
    .expect("job");
    job.create(T0, "r", &spec(3)).expect("create");
    let tasks: Vec<_> = (1..=6).map(|s| task(s, 10)).collect();
    assert_eq!(
        job.enqueue(T0, &tasks[..2]).expect("enqueue"),
        Enqueued::Added {
            added: 2,
            skipped: 0
        }
    );
    // Tasks 3..4 were lost (a rollback): 5..6 may not land above the hole.
    assert_eq!(
        job.enqueue(T0, &tasks[4..]).expect("enqueue"),
        Enqueued::Gap { last_seq: 2 }
    );
    assert_eq!(status(&mut job, T0).tasks, 2, "nothing was added");
    // Re-sending from last_seq + 1, overlapping what is there, fills it in.
    assert_eq!(
        job.enqueue(T0, &tasks[1..]).expect("enqueue"),
        Enqueued::Added {
            added: 4,
            skipped: 1
        }
    );
    // A hole inside one batch is a caller's bug, refused before any write.
    let holed = [task(7, 10), task(9, 10)];
    let err = job.enqueue(T0, &holed).expect_err("refused");
    assert!(err.to_string().contains("no holes"), "{err}");
    // A seal over fewer tasks than planned is refused.
    assert_eq!(job.seal(T0, 8).expect("seal"), (false, 6));
    assert_eq!(job.seal(T0, 6).expect("seal"), (true, 6));
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
    let c = served(&mut job, T0)
        .claim(T0, &req("w", 10, 1 << 20, 3, LEASE))
        .expect("claim");
    let c2 = served(&mut job, T0)
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
    assert!(served(&mut job, now + 25)
        .claim(now + 25, &spec)
        .expect("claim")
        .tasks
        .is_empty());
    let taken = served(&mut job, now + 31)
        .claim(now + 31, &spec)
        .expect("claim")
        .tasks;
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].id.as_str(), taken[0].attempts), ("12-0", 2));
    assert_eq!(status(&mut job, now + 31).speculated, 1);
    // The speculative copy is not handed out again to its new holder, and the first commit wins.
    assert!(served(&mut job, now + 500)
        .claim(now + 500, &spec)
        .expect("claim")
        .tasks
        .is_empty());
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
        served(&mut job, now + 500)
            .claim(now + 500, &spec)
            .expect("claim")
            .tasks
            .is_empty(),
        "the straggler takes nothing"
    );
    spec.worker = "idle";
    assert_eq!(
        served(&mut job, now + 500)
            .claim(now + 500, &spec)
            .expect("claim")
            .tasks
            .len(),
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
    // The same calls twice: the same tokens too.
    job.set_instance("i1");
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
    served(&mut job, now + 100)
        .claim(now + 100, &spec_req)
        .expect("speculate");
    served(&mut job, now + 200)
        .renew(now + 200, "a", LEASE_D, &["12-0".into()])
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

/// `job`, served up to `now` (see support::served_every).
fn served(job: &mut Job, now: u64) -> &mut Job {
    support::served_every(job, LEASE, now)
}

#[test]
fn a_late_commit_by_the_first_holder_records_its_own_claim() {
    let (_server, mut job) = setup(1, 3);
    assert_eq!(claim(&mut job, T0, "a", 1), vec!["1-0"]);
    // a stalls; its lease runs out and b gets the task at T0 + LEASE + 1.
    assert_eq!(claim(&mut job, T0 + LEASE + 1, "b", 1), vec!["1-0"]);
    // a comes back and commits first.
    assert_eq!(
        commit(&mut job, T0 + 1600, "a", &["1-0"], &[(b"x", 1)]),
        CommitOutcome::Applied
    );
    let done = job.done_records().expect("done");
    assert_eq!(done.len(), 1);
    let r = &done[0];
    assert_eq!(
        (r.worker.as_str(), r.claimed_ms, r.attempts, r.committed_ms),
        ("a", T0, 1, T0 + 1600),
        "a's own claim and delivery, not b's"
    );
    // Its work took 1,600 ms, as the straggler rule must see it.
    assert_eq!(r.committed_ms - r.claimed_ms, 1600);
}

#[test]
fn an_input_one_worker_cannot_open_goes_to_another_and_fails_only_when_none_can() {
    let window = 10 * LEASE_D;
    let (_server, mut job) = setup(2, 3);
    assert_eq!(claim(&mut job, T0, "a", 1), vec!["1-0"]);
    assert_eq!(claim(&mut job, T0 + 1, "b", 1), vec!["2-0"]);
    // Only the holder may defer.
    assert_eq!(
        job.defer(T0 + 5, "b", "1-0", window).expect("defer"),
        Deferral::NotHeld
    );
    // a's host lacks 1-0's file; b is live, so the task waits for b, uncharged.
    assert_eq!(
        job.defer(T0 + 10, "a", "1-0", window).expect("defer"),
        Deferral::Deferred
    );
    assert!(
        claim(&mut job, T0 + 20, "a", 1).is_empty(),
        "a was handed a task it said it cannot open while b could take it"
    );
    assert_eq!(
        commit(&mut job, T0 + 30, "b", &["2-0"], &[(b"w", 1)]),
        CommitOutcome::Applied
    );
    let again = served(&mut job, T0 + 40)
        .claim(T0 + 40, &req("b", 1, 1 << 20, 3, 10 * LEASE))
        .expect("claim");
    assert_eq!(again.tasks.len(), 1);
    assert_eq!(again.tasks[0].id, "1-0");
    assert_eq!(
        status(&mut job, T0 + 40).dead,
        0,
        "deferring charged the task"
    );
    // b lacks it too: every live worker has now said so.
    assert_eq!(
        job.defer(T0 + 50, "b", "1-0", window).expect("defer"),
        Deferral::NobodyCan(2)
    );
    assert!(job
        .fail(T0 + 60, "b", "1-0", "missing on each")
        .expect("fail"));
    let s = status(&mut job, T0 + 60);
    assert_eq!((s.done, s.dead, s.finished), (1, 1, true));
}

#[test]
fn a_lone_worker_that_cannot_open_an_input_fails_it_at_once() {
    let (_server, mut job) = setup(1, 3);
    assert_eq!(claim(&mut job, T0, "a", 1), vec!["1-0"]);
    assert_eq!(
        job.defer(T0 + 10, "a", "1-0", 10 * LEASE_D).expect("defer"),
        Deferral::NobodyCan(1)
    );
    // A deferred task whose only other worker then went quiet comes back to the one that lacks it.
    let (_server2, mut job2) = setup(1, 3);
    assert_eq!(claim(&mut job2, T0, "a", 1), vec!["1-0"]);
    let _ = claim(&mut job2, T0 + 1, "b", 1);
    assert_eq!(
        job2.defer(T0 + 10, "a", "1-0", 10 * LEASE_D)
            .expect("defer"),
        Deferral::Deferred
    );
    let later = T0 + 10 * LEASE + 100;
    assert_eq!(claim(&mut job2, later, "a", 1), vec!["1-0"]);
}

/// What a ZINCRBY commit does to one word, without the commit around it.
fn add_one(con: &mut redis::Connection, counts: &str, word: &str) {
    let _: f64 = redis::cmd("ZINCRBY")
        .arg(counts)
        .arg(1)
        .arg(word)
        .query(con)
        .expect("zincrby");
}

#[test]
fn top_is_one_snapshot_while_commits_move_the_cutoff() {
    // Words tied at the cutoff keep moving above it: a top read in two steps (the head, then the
    // cutoff's tie group) saw fewer than k words whenever a commit landed between them.
    let (server, mut job) = setup(1, 3);
    let counts = JobKeys::new("t").expect("keys").counts;
    let mut con = redis::Client::open(server.url().as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    for w in ["a", "b", "c", "d", "e", "f"] {
        add_one(&mut con, &counts, w);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let counts = counts.clone();
        std::thread::spawn(move || {
            let mut rng = 7u64;
            let words = ["a", "b", "c", "d", "e", "f"];
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 200_000 {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let w = words[(rng >> 33) as usize % words.len()];
                add_one(&mut con, &counts, w);
                n += 1;
            }
        })
    };
    for _ in 0..3_000 {
        let top = job.top(3).expect("top");
        assert_eq!(top.len(), 3, "a top of 3 from 6 words: {top:?}");
        assert!(
            top.windows(2)
                .all(|p| p[0].1 > p[1].1 || (p[0].1 == p[1].1 && p[0].0 < p[1].0)),
            "out of order: {top:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
}
