//! Inputs that fail or kill their workers: the dead stream, inputs one worker cannot open, tasks given up.

use super::*;

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
    // Finished once the committed task's counts are merged, as the job's workers merge them.
    let s = status(merged(&mut job, T0 + 60), T0 + 60);
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
