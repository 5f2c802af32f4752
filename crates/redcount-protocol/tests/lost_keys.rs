//! A Redis shared with others: keys of a job that vanish (evicted, or deleted by another client)
//! fail the job by name instead of being read as empty, and staged blobs never mix with what
//! another process or an earlier life of a worker left under the same name.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use redcount_protocol::{
    CommitOutcome, Error, Job, JobKeys, Joined, Link, LinkOptions, MergePolicy, Now, StopKind,
    INLINE_BLOB,
};

mod support;
use support::aggregation::{blobs, claim, counts, merge_all, served, setup, LEASE, T0};

fn con(job_url: &str) -> redis::Connection {
    redis::Client::open(job_url)
        .and_then(|c| c.get_connection())
        .expect("connect")
}

fn del(con: &mut redis::Connection, key: &str) {
    let n: i64 = redis::cmd("DEL").arg(key).query(con).expect("DEL");
    assert_eq!(n, 1, "{key} was there to delete");
}

fn at_once() -> MergePolicy {
    MergePolicy {
        min_parts: 1,
        min_age: Duration::ZERO,
        max_parts: 64,
    }
}

fn assert_failed_naming(job: &mut Job, now: u64, key: &str) {
    let s = job.status(now, LEASE).expect("status");
    assert_eq!(s.stopped(), Some("failed"), "{s:?}");
    assert!(s.finished, "a failed job is over: {s:?}");
    assert!(s.stop_reason.contains(key), "{}", s.stop_reason);
}

fn is_stopped<T: std::fmt::Debug>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Stopped { .. }))
}

/// One task claimed at `now` and committed by worker `a` with one `word`, as a worker does.
fn commit_one(job: &mut Job, now: u64, word: &str) {
    let ids = claim(job, now, "a");
    job.commit_parts(now + 1, "a", &[(ids[0].clone(), 1)], &blobs(&[(word, 1)]))
        .expect("commit");
}

/// The keys of the Redis behind `con` matching `pattern`, sorted.
fn keys(con: &mut redis::Connection, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(con).expect("KEYS");
    keys.sort();
    keys
}

/// A claim of `worker` that may take 5 tasks.
fn request(worker: &str) -> redcount_protocol::ClaimRequest<'_> {
    redcount_protocol::ClaimRequest {
        worker,
        lease: LEASE,
        max_tasks: 5,
        max_bytes: 1 << 30,
        max_attempts: 3,
        live_window: LEASE * 3,
        speculate_factor: 0.0,
        speculate_min: Duration::ZERO,
    }
}

#[test]
fn a_partial_deleted_before_its_merge_fails_the_job_by_name() {
    let (server, mut job) = setup(2);
    let mut c = con(&server.url());
    commit_one(&mut job, T0, "w");
    let part = keys(&mut c, "rc:{p}:part:*");
    del(&mut c, &part[0]);
    let merge = served(&mut job, T0 + 2).merge_claim(T0 + 2, "m", LEASE, &at_once());
    assert!(is_stopped(&merge), "{merge:?}");
    assert_failed_naming(&mut job, T0 + 3, &part[0]);
    // Workers see a failed job as finished, and leave.
    let c2 = job.claim(T0 + 4, &request("b")).expect("claim");
    assert!(c2.finished && c2.tasks.is_empty());
}

#[test]
fn an_index_of_partials_deleted_fails_the_job_instead_of_waiting_forever() {
    let (server, mut job) = setup(1);
    let mut c = con(&server.url());
    commit_one(&mut job, T0, "w");
    let index = keys(&mut c, "rc:{p}:parts:*");
    del(&mut c, &index[0]);
    let merge = served(&mut job, T0 + 2).merge_claim(T0 + 2, "m", LEASE, &at_once());
    assert!(is_stopped(&merge), "{merge:?}");
    assert_failed_naming(&mut job, T0 + 3, "rc:{p}:parts:");
}

#[test]
fn a_result_deleted_mid_job_or_after_it_fails_the_job_by_name() {
    // Mid-job: the next merge of that partition finds it gone.
    let (server, mut job) = setup(2);
    let mut c = con(&server.url());
    commit_one(&mut job, T0, "w");
    assert_eq!(merge_all(&mut job, T0 + 2, "m", &at_once()), 1);
    let results = keys(&mut c, "rc:{p}:result:*");
    del(&mut c, &results[0]);
    commit_one(&mut job, T0 + 3, "w");
    let merge = served(&mut job, T0 + 5).merge_claim(T0 + 5, "m", LEASE, &at_once());
    assert!(is_stopped(&merge), "{merge:?}");
    assert_failed_naming(&mut job, T0 + 6, &results[0]);

    // After the job: the check before its result is read finds it gone.
    let (server, mut job) = setup(1);
    let mut c = con(&server.url());
    let ids = claim(&mut job, T0, "a");
    job.commit_parts(
        T0 + 1,
        "a",
        &[(ids[0].clone(), 3)],
        &blobs(&[("w", 1), ("x", 2)]),
    )
    .expect("commit");
    merge_all(&mut job, T0 + 2, "m", &at_once());
    let s = job.status(T0 + 3, LEASE).expect("status");
    assert!(s.finished);
    job.check_result(T0 + 3, s.words).expect("a whole result");
    let tops = keys(&mut c, "rc:{p}:result:*");
    del(&mut c, &tops[0]);
    assert!(is_stopped(&job.check_result(T0 + 4, s.words)));
    assert_failed_naming(&mut job, T0 + 5, &tops[0]);
}

#[test]
fn a_task_stream_deleted_fails_the_job_at_the_next_claim() {
    let (server, mut job) = setup(3);
    let mut c = con(&server.url());
    claim(&mut job, T0, "a");
    del(&mut c, "rc:{p}:tasks");
    assert!(is_stopped(
        &served(&mut job, T0 + 1).claim(T0 + 1, &request("b"))
    ));
    assert_failed_naming(&mut job, T0 + 2, "rc:{p}:tasks");
}

#[test]
fn a_job_is_not_made_again_over_what_is_left_of_it_and_can_be_removed() {
    let (server, mut job) = setup(2);
    let mut c = con(&server.url());
    commit_one(&mut job, T0, "w");
    del(&mut c, "rc:{p}:meta");
    let again = job.create(T0 + 2, "run2", &Default::default());
    assert!(
        matches!(&again, Err(Error::Stopped { reason, .. }) if reason.contains("jobs rm p --force")),
        "{again:?}"
    );
    assert!(job.drop_job(T0 + 3, true).expect("drop") > 3);
    let left = keys(&mut c, "rc:{p}:*");
    assert!(left.is_empty(), "{left:?}");
    assert!(
        job.create(T0 + 4, "run3", &Default::default())
            .expect("create")
            .0
    );
}

#[test]
fn a_cancelled_job_is_over_for_its_workers_and_stays_cancelled() {
    let (_server, mut job) = setup(3);
    claim(&mut job, T0, "a");
    assert!(job
        .stop(T0 + 1, StopKind::Cancelled, "asked to by an operator")
        .expect("stop"));
    assert!(!job
        .stop(T0 + 2, StopKind::Failed, "too late")
        .expect("second stop"));
    job.seal(T0 + 3, 3).expect("seal");
    let s = job.status(T0 + 4, LEASE).expect("status");
    assert_eq!((s.phase(), s.finished), ("cancelled", true));
    assert_eq!(s.stop_reason, "asked to by an operator");
    assert!(s.finished_ms > 0);
}

/// Two processes with one name commit large blobs at the same moment: each blob is staged under
/// a token of its own process, so both are counted exactly (with a per-name counter as the token,
/// both appended their pieces to one key).
#[test]
fn two_processes_sharing_a_name_stage_large_blobs_without_mixing_them() {
    let (server, mut first) = setup(2);
    let url = server.url();
    let words = |tag: &str| -> Vec<(String, u64)> {
        (0..60_000u64)
            .map(|i| (format!("{tag}{i:07}"), 1))
            .collect()
    };
    let ids = [claim(&mut first, T0, "w"), claim(&mut first, T0, "w")];
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = ["a", "b"]
        .into_iter()
        .zip(ids)
        .map(|(tag, id)| {
            let (url, barrier, words) = (url.clone(), barrier.clone(), words(tag));
            std::thread::spawn(move || {
                let mut job = Job::new(Link::open(&url, LinkOptions::default()).expect("url"), "p")
                    .expect("job");
                let refs: Vec<(&str, u64)> = words.iter().map(|(w, n)| (w.as_str(), *n)).collect();
                let parts = blobs(&refs);
                assert!(parts.iter().any(|(_, b)| b.len() > INLINE_BLOB));
                barrier.wait();
                job.commit_parts(Now::Coordinator, "w", &[(id[0].clone(), 60_000)], &parts)
                    .expect("commit")
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread"), CommitOutcome::Applied);
    }
    merge_all(&mut first, T0 + 10, "m", &MergePolicy::default());
    let got = counts(&mut first);
    assert_eq!(got.len(), 120_000);
    assert!(got.iter().all(|(_, n)| *n == 1));
}

#[test]
fn a_staged_blob_is_written_where_it_belongs_or_staged_again() {
    let (server, _job) = setup(1);
    let mut c = con(&server.url());
    let keys = JobKeys::new("p").expect("keys");
    let stage = |c: &mut redis::Connection, offset: u64, piece: &str| -> i64 {
        redis::cmd("FCALL")
            .arg("rc_stage")
            .arg(9)
            .arg(&keys.all()[..])
            .arg("*")
            .arg("w")
            .arg("t")
            .arg(0)
            .arg(offset)
            .arg(piece)
            .query(c)
            .expect("stage")
    };
    let key = "rc:{p}:stage:w:t:0";
    // What a killed process left under the key is replaced by a first piece, never appended to.
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg("junk")
        .query(&mut c)
        .expect("SET");
    assert_eq!(stage(&mut c, 0, "abc"), 3);
    assert_eq!(stage(&mut c, 3, "def"), 6);
    // The same piece again (a retry after a lost reply) is not appended twice.
    assert_eq!(stage(&mut c, 3, "def"), 6);
    // A piece that does not continue the blob: stage again from the start.
    assert_eq!(stage(&mut c, 9, "ghi"), -1);
    let blob: String = redis::cmd("GET").arg(key).query(&mut c).expect("GET");
    assert_eq!(blob, "abcdef");
    // A commit naming the staged blob with another length changes nothing: restage.
    let reply: Vec<String> = redis::cmd("FCALL")
        .arg("rc_commit_parts")
        .arg(9)
        .arg(&keys.all()[..])
        .arg("*")
        .arg("w")
        .arg("t")
        .arg(1)
        .arg("1-0")
        .arg(1)
        .arg(0)
        .arg("s")
        .arg(7)
        .query(&mut c)
        .unwrap_or_default();
    assert!(
        reply.is_empty() || reply[0] == "restage" || reply[0] == "dup",
        "{reply:?}"
    );
}

#[test]
fn a_worker_name_is_held_by_one_live_process_at_a_time() {
    let (server, mut first) = setup(1);
    let mut second = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "p",
    )
    .expect("job");
    let window = Duration::from_secs(3);
    assert_eq!(first.join(T0, "w", window).expect("join"), Joined::Yes);
    assert_eq!(
        first.join(T0 + 10, "w", window).expect("again"),
        Joined::Yes
    );
    assert_eq!(
        second.join(T0 + 1_000, "w", window).expect("join"),
        Joined::Taken(Duration::from_millis(990))
    );
    // Once the first life has been silent for the window, the name is free again.
    assert_eq!(
        second.join(T0 + 3_011, "w", window).expect("join"),
        Joined::Yes
    );
    assert_eq!(
        first.join(T0 + 3_012, "w", window).expect("join"),
        Joined::Taken(Duration::from_millis(1))
    );
}
