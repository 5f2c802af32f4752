//! Commits: exactly once, stale and partly stale batches, malformed commits refused before any write, late commits by a first holder.

use super::*;

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
    assert_eq!(count_of(&mut job, T0 + LEASE + 6, "x"), 2);
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
    assert_eq!(count_of(&mut job, T0 + LEASE + 3, "w"), 1);
    assert_eq!(
        commit(&mut job, T0 + LEASE + 4, "a", &["2-0"], &[(b"w", 1)]),
        CommitOutcome::Applied
    );
    assert_eq!(count_of(&mut job, T0 + LEASE + 4, "w"), 2);
    assert!(status(&mut job, T0 + LEASE + 4).finished);
}

#[test]
fn a_bad_commit_is_refused_before_any_write() {
    let (_server, mut job) = setup_zincrby(1, 3);
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
fn a_commit_naming_a_task_twice_is_refused() {
    let (_server, mut job) = setup_zincrby(1, 3);
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
