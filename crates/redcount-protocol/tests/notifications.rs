//! Being told instead of polling: a job's end (its last merge, or a stop) is written once to its
//! `end` stream, and every blocking read of a worker or a driver includes it, so a waiter wakes
//! when the job ends rather than at its timeout. Against a real redis-server this test starts.

use std::sync::mpsc::channel;
use std::time::Duration;

use redcount_protocol::{
    CommitOutcome, Job, JobKeys, JobSpec, Link, LinkOptions, MergePolicy, StopKind,
};

mod support;
use support::aggregation::{blobs, claim, merge_all, setup, T0};

/// Far longer than the test may wait: a waiter still blocked at the end of it was not told.
const WAITER_TIMEOUT: Duration = Duration::from_secs(120);
const TOLD_WITHIN: Duration = Duration::from_secs(60);

fn at_once() -> MergePolicy {
    MergePolicy {
        min_parts: 1,
        min_age: Duration::ZERO,
        max_parts: 64,
    }
}

/// A plain connection, to look at the keys.
fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("url")
        .get_connection()
        .expect("connect")
}

/// Job "p" on a link of its own (a waiter in another thread).
fn job_p(url: &str) -> Job {
    Job::new(Link::open(url, LinkOptions::default()).expect("url"), "p").expect("job")
}

fn end_entries(con: &mut redis::Connection, job: &str) -> u64 {
    let key = JobKeys::new(job).expect("name").end();
    redis::cmd("XLEN").arg(&key).query(con).expect("XLEN")
}

#[test]
fn waiters_wake_when_the_last_merge_ends_the_job() {
    let (server, mut job) = setup(1);
    let mut con = connect(&server.url());
    let ids = claim(&mut job, T0, "a");
    assert_eq!(
        job.commit_parts(T0 + 10, "a", &[(ids[0].clone(), 2)], &blobs(&[("x", 2)]))
            .expect("commit"),
        CommitOutcome::Applied
    );
    // Every task is committed; the job ends with its merge. Nothing has ended yet.
    let (_, ended) = job
        .commits_after(1, Duration::from_millis(1))
        .expect("read");
    assert!(!ended, "the job has not ended before its merge");
    assert_eq!(end_entries(&mut con, "p"), 0);

    // An idle worker and a driver, each blocked in its read for far longer than the test waits.
    let (told, woken) = channel();
    let mut waiters = Vec::new();
    for role in ["worker", "driver"] {
        let url = server.url();
        let told = told.clone();
        waiters.push(std::thread::spawn(move || {
            let mut job = job_p(&url);
            match role {
                "worker" => job
                    .wait_for_change("1-0", "1-0", WAITER_TIMEOUT)
                    .expect("wait"),
                _ => assert!(job.commits_after(1, WAITER_TIMEOUT).expect("read").1),
            }
            told.send(role).expect("send");
        }));
    }
    // Both are blocked: neither has anything to wake for yet.
    assert!(woken.recv_timeout(Duration::from_millis(300)).is_err());

    assert!(merge_all(&mut job, T0 + 20, "a", &at_once()) > 0);
    let mut roles: Vec<&str> = (0..2)
        .map(|_| {
            woken
                .recv_timeout(TOLD_WITHIN)
                .expect("a waiter was not woken by the job's end")
        })
        .collect();
    roles.sort();
    assert_eq!(roles, ["driver", "worker"]);
    for w in waiters {
        w.join().expect("waiter");
    }
    assert_eq!(end_entries(&mut con, "p"), 1, "the end is written once");
    // A waiter arriving after the end returns at once, and says the job ended.
    let (records, ended) = job.commits_after(1, WAITER_TIMEOUT).expect("read");
    assert!(ended && records.is_empty());
    // Finished calls after the end write nothing more.
    assert_eq!(
        job.commit_parts(T0 + 30, "a", &[(ids[0].clone(), 2)], &blobs(&[("x", 2)]))
            .expect("commit"),
        CommitOutcome::Duplicate
    );
    assert_eq!(end_entries(&mut con, "p"), 1);
}

#[test]
fn a_stopped_job_ends_too_and_its_end_goes_with_it() {
    let (server, mut job) = setup(3);
    let mut con = connect(&server.url());
    let url = server.url();
    let waiter = std::thread::spawn(move || {
        let mut job = job_p(&url);
        job.wait_for_change("3-0", "0-0", WAITER_TIMEOUT)
            .expect("wait");
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(job
        .stop(T0 + 5, StopKind::Cancelled, "an operator cancelled it")
        .expect("stop"));
    let (done, joined) = channel();
    std::thread::spawn(move || done.send(waiter.join().is_ok()));
    assert!(
        joined
            .recv_timeout(TOLD_WITHIN)
            .expect("the waiter was not woken by the stop"),
        "waiter"
    );
    assert_eq!(end_entries(&mut con, "p"), 1);
    // A second stop keeps the first reason and writes no second end.
    assert!(!job.stop(T0 + 6, StopKind::Failed, "later").expect("stop"));
    assert_eq!(end_entries(&mut con, "p"), 1);

    // The end stream is the job's: removed with it, and a leftover one refuses a new job of the name.
    job.drop_job(T0 + 7, true).expect("drop");
    assert_eq!(end_entries(&mut con, "p"), 0);
    let key = JobKeys::new("p").expect("name").end();
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("1-0")
        .arg("at")
        .arg(1)
        .query(&mut con)
        .expect("plant a leftover end");
    let refused = job.create(T0 + 8, "run2", &JobSpec::default());
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("left")),
        "a leftover end stream is refused: {refused:?}"
    );
}
