//! Claims and leases: one holder per task, byte limits, expiry and renewal, paused lease clocks, workers' clocks ignored, speculation, retried claims.

use super::*;

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

/// A worker may ask for a shorter lease than its job's (`worker --lease`): the coordinator's
/// quiet stretches must pause that lease too, not only the job's (the clock paused only after a
/// third of the job's lease, so a quiet stretch took a live worker's short-leased task away).
#[test]
fn a_quiet_coordinator_pauses_a_workers_shorter_lease_too() {
    let (_server, mut job) = setup(1, 3);
    let short = Duration::from_millis(LEASE / 4);
    let mut request = req("a", 1, 1 << 20, 3, 10 * LEASE);
    request.lease = short;
    let c = served(&mut job, T0).claim(T0, &request).expect("claim");
    assert_eq!(c.tasks.len(), 1);
    // Nothing is served for two job leases (a failover): `a` could not renew its short lease.
    let back = T0 + 2 * LEASE;
    let c = job
        .claim(back, &req("b", 1, 1 << 20, 3, 10 * LEASE))
        .expect("claim");
    assert!(
        c.tasks.is_empty(),
        "the quiet stretch ran a's short lease down: {:?}",
        c.tasks
    );
    // `a` renews as soon as the coordinator is back and keeps its task.
    let kept = job
        .renew(back + 1, "a", short, &["1-0".into()])
        .expect("renew");
    assert_eq!(kept, vec!["1-0".to_string()]);
    let s = status(&mut job, back + 2);
    assert_eq!(s.redelivered, 0);
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
    assert_eq!(count_of(&mut job, now + 900, "w"), 12);
    let s = status(&mut job, now + 900);
    assert!(s.finished);
    assert_eq!((s.recomputed, s.duplicates), (1, 1));
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
