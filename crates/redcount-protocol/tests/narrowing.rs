//! Narrowing down what kills workers, called directly with pinned times: a task whose holder fell
//! silent counting it alone is charged and comes back with the charge; split, its parts settle
//! one by one and exactly once (a late commit of the whole after the split is a duplicate); a
//! holder that is heard from is never charged, and one charged but heard later is cleared; a
//! given-up task names every file and range of it.

use std::path::PathBuf;
use std::time::Duration;

use redcount_protocol::{
    ClaimRequest, CommitOutcome, Format, Job, JobSpec, Link, LinkOptions, NewTask, Piece, Task,
};
use redcount_server::{RedisServer, ServerOptions};

mod support;

const LEASE: u64 = 1_000;
const T0: u64 = 1_700_000_000_000;

/// A job of one task packing `files` files of 100 bytes (or one range of 1,000,000 bytes when
/// `files` is 1), sealed, with `max_attempts`.
fn setup(files: usize, max_attempts: u32) -> (RedisServer, Job) {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut job = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "n",
    )
    .expect("job");
    let spec = JobSpec {
        lease: redcount_protocol::Lease::new(Duration::from_millis(LEASE)).expect("a lease"),
        max_attempts,
        partitions: redcount_protocol::Partitions::clamped(2),
        ..JobSpec::default()
    };
    job.create(T0, "run1", &spec).expect("create");
    let piece = |i: usize| Piece {
        path: PathBuf::from(format!("/data/f{i}.txt")),
        start: 0,
        end: 100,
        format: Format::Text,
        version: None,
    };
    let task = NewTask {
        seq: 1,
        path: PathBuf::from("/data/f0.txt"),
        start: 0,
        end: if files == 1 { 1_000_000 } else { 100 },
        format: Format::Text,
        version: None,
        more: (1..files).map(piece).collect(),
        due_ms: None,
    };
    job.enqueue(T0, &[task]).expect("enqueue");
    job.seal(T0, 1).expect("seal");
    (server, job)
}

fn claim_one(job: &mut Job, now: u64, worker: &str, max_attempts: u32) -> Option<Task> {
    let request = ClaimRequest {
        worker,
        lease: Duration::from_millis(LEASE),
        max_tasks: 10,
        max_bytes: 1 << 40,
        max_attempts,
        live_window: Duration::from_millis(10 * LEASE),
        speculate_factor: 0.0,
        speculate_min: Duration::ZERO,
    };
    support::served_every(job, LEASE, now)
        .claim(now, &request)
        .expect("claim")
        .tasks
        .into_iter()
        .next()
}

fn blob(word: &str) -> Vec<(u32, Vec<u8>)> {
    redcount_count::partial::partition_blobs(std::iter::once((word.as_bytes(), 1)), 2)
}

/// `w1` takes the task, dies; `w2` takes it alone and dies too: `w3` gets it with one charge.
fn charged_once(job: &mut Job) -> (Task, u64) {
    let first = claim_one(job, T0, "w1", 5).expect("first delivery");
    assert!(!first.solo && first.charged == 0);
    let second = claim_one(job, T0 + LEASE + 1, "w2", 5).expect("handed out alone");
    assert!(
        second.solo && second.charged == 0,
        "a batch's death charges nothing"
    );
    let now = T0 + 2 * LEASE + 2;
    let third = claim_one(job, now, "w3", 5).expect("handed out alone again");
    assert!(third.solo);
    assert_eq!(third.charged, 1, "its holder fell silent counting it alone");
    (third, now)
}

#[test]
fn a_charged_packed_task_splits_into_halves_that_settle_once_each() {
    let (_server, mut job) = setup(10, 5);
    let (task, now) = charged_once(&mut job);
    assert_eq!(task.more.len(), 9);
    let (a, b) = job
        .split(now, "w3", &task.id, 5)
        .expect("split")
        .expect("w3 holds it");
    assert_eq!((a.as_str(), b.as_str()), ("1-0.1", "1-0.2"));
    // The halves are handed out alone, one each, with files 0..4 and 5..9.
    let half_a = claim_one(&mut job, now + 1, "w3", 5).expect("a half");
    let half_b = claim_one(&mut job, now + 1, "w4", 5).expect("the other half");
    assert!(half_a.solo && half_b.solo && half_a.charged == 0);
    let files =
        |t: &Task| -> Vec<String> { t.pieces().map(|p| p.path.display().to_string()).collect() };
    assert_eq!(
        files(&half_a),
        (0..5)
            .map(|i| format!("/data/f{i}.txt"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        files(&half_b),
        (5..10)
            .map(|i| format!("/data/f{i}.txt"))
            .collect::<Vec<_>>()
    );
    assert_eq!(half_a.len() + half_b.len(), 1000, "every byte in one half");
    // A late commit of the whole task (its first holder was only stalled) is a duplicate: the
    // halves carry every file.
    assert_eq!(
        job.commit_parts(now + 2, "w1", &[(task.id.clone(), 1)], &blob("x"))
            .expect("late commit"),
        CommitOutcome::Duplicate
    );
    for (t, w) in [(&half_a, "w3"), (&half_b, "w4")] {
        assert_eq!(
            job.commit_parts(now + 3, w, &[(t.id.clone(), 1)], &blob("y"))
                .expect("commit"),
            CommitOutcome::Applied
        );
    }
    let s = job
        .status(now + 4, Duration::from_secs(10))
        .expect("status");
    assert_eq!((s.done, s.dead, s.splits, s.to_settle()), (2, 0, 1, 2));
    assert!(s.tasks_all_done());
    assert_eq!(s.done_bytes, 1000);
    // Splitting again what is gone changes nothing.
    assert_eq!(job.split(now + 5, "w3", &task.id, 5).expect("split"), None);
}

#[test]
fn a_charged_range_splits_at_the_cut_and_a_minimal_piece_is_buried_by_name() {
    let (_server, mut job) = setup(1, 2);
    let (task, now) = charged_once(&mut job);
    assert!(task.more.is_empty());
    job.split(now, "w3", &task.id, 400_000)
        .expect("split")
        .expect("held");
    let a = claim_one(&mut job, now + 1, "w5", 2).expect("a part");
    assert_eq!((a.start, a.end), (0, 400_000));
    // The part kills its workers: charged twice (max_attempts 2), it is buried, named with its
    // range; the other part is still to do.
    let mut now = now + 1;
    for w in ["w6", "w7"] {
        now += LEASE + 1;
        let again = claim_one(&mut job, now, w, 2);
        assert!(again.is_some_and(|t| t.solo));
    }
    now += LEASE + 1;
    let other = claim_one(&mut job, now, "w8", 2).expect("the other part");
    assert_eq!((other.start, other.end), (400_000, 1_000_000));
    let dead = job.dead_tasks().expect("dead");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0].path.as_str(), dead[0].start, dead[0].end),
        ("/data/f0.txt", 0, 400_000)
    );
    assert!(
        dead[0].error.contains("gave up after 2 attempts"),
        "{}",
        dead[0].error
    );
    job.commit_parts(now + 1, "w8", &[(other.id.clone(), 1)], &blob("z"))
        .expect("commit");
    let s = job
        .status(now + 2, Duration::from_secs(10))
        .expect("status");
    assert_eq!((s.done, s.dead, s.splits), (1, 1, 1));
    assert!(s.tasks_all_done());
}

#[test]
fn a_holder_that_is_heard_from_is_not_charged_and_a_charge_it_disproves_is_cleared() {
    let (_server, mut job) = setup(3, 5);
    let first = claim_one(&mut job, T0, "w1", 5).expect("first");
    let alone = claim_one(&mut job, T0 + LEASE + 1, "w2", 5).expect("alone");
    assert!(alone.solo);
    // w2 is alive: it renews (another task of its own, say) but its lease on this one ran out.
    let now = T0 + 2 * LEASE + 2;
    support::served_every(&mut job, LEASE, now - 100)
        .renew(now - 100, "w2", Duration::from_millis(LEASE), &[])
        .expect("renew");
    let again = claim_one(&mut job, now, "w3", 5).expect("alone again");
    assert_eq!(again.charged, 0, "a live holder is not charged");
    // w3 falls silent and is charged; then it is heard renewing the task: not a death.
    let later = now + LEASE + 1;
    let charged = claim_one(&mut job, later, "w4", 5).expect("alone");
    assert_eq!(charged.charged, 1);
    support::served_every(&mut job, LEASE, later + 1)
        .renew(
            later + 1,
            "w3",
            Duration::from_millis(LEASE),
            std::slice::from_ref(&again.id),
        )
        .expect("late renewal");
    let after = claim_one(&mut job, later + LEASE + 2, "w5", 5).expect("alone");
    // w4 fell silent (charged), w3's charge was cleared: one charge, not two.
    assert_eq!(after.charged, 1);
    let _ = first;
}

#[test]
fn a_given_up_packed_task_names_every_file() {
    let (_server, mut job) = setup(4, 1);
    let (task, now) = {
        let _ = claim_one(&mut job, T0, "w1", 1).expect("first");
        let t = claim_one(&mut job, T0 + LEASE + 1, "w2", 1).expect("alone");
        (t, T0 + 2 * LEASE + 2)
    };
    // Not split (its worker died before it could): with max_attempts 1 the charge buries it.
    assert!(claim_one(&mut job, now, "w3", 1).is_none());
    let dead = job.dead_tasks().expect("dead");
    let mut paths: Vec<&str> = dead.iter().map(|d| d.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "/data/f0.txt",
            "/data/f1.txt",
            "/data/f2.txt",
            "/data/f3.txt"
        ],
        "{task:?}"
    );
    assert!(dead.iter().all(|d| (d.start, d.end) == (0, 100)));
    let s = job.status(now, Duration::from_secs(10)).expect("status");
    assert_eq!((s.dead, s.dead_records, s.finished), (1, 4, true));
}
