//! Listing the jobs of a Redis that other applications share: every page of the keyspace is read
//! once, whatever else the server holds.

use std::sync::mpsc;
use std::time::Duration;

use redcount_protocol::{job_names, scan_job_names, Job, JobSpec, Link, LinkOptions};
use redcount_server::{RedisServer, ServerOptions};

const T0: u64 = 1_700_000_000_000;

#[test]
fn a_scan_for_jobs_reads_every_page_of_a_redis_holding_many_other_keys() {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut con = redis::Client::open(server.url())
        .expect("url")
        .get_connection()
        .expect("connect");
    // Five pages of another application's keys (SCAN reads ~1,000 a page): a listing that
    // restarted from cursor 0 on every page never ended here.
    for chunk in 0..5 {
        let mut pipe = redis::pipe();
        for i in 0..1_000 {
            pipe.set(format!("other:{chunk}:{i}"), i).ignore();
        }
        pipe.query::<()>(&mut con).expect("SET");
    }
    for name in ["a", "b", "c"] {
        let mut job = Job::new(
            Link::open(&server.url(), LinkOptions::default()).expect("url"),
            name,
        )
        .expect("job");
        job.create(T0, "run1", &JobSpec::default()).expect("create");
    }

    let url = server.url();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let names =
            Link::open(&url, LinkOptions::default()).and_then(|mut link| scan_job_names(&mut link));
        let _ = tx.send(names.map_err(|e| e.to_string()));
    });
    let names = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("listing the jobs did not end within 20 s")
        .expect("job_names");
    assert_eq!(names, vec!["a", "b", "c"]);
}

fn scans(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(con)
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_scan:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn jobs_are_listed_from_their_register_without_scanning_and_a_dropped_one_leaves_it() {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut con = redis::Client::open(server.url())
        .expect("url")
        .get_connection()
        .expect("connect");
    // A job made by an older version: a meta hash and no register. Found by one scan, then
    // registered.
    let _: () = redis::cmd("HSET")
        .arg("rc:{legacy}:meta")
        .arg("state")
        .arg("sealed")
        .query(&mut con)
        .expect("HSET");
    let mut link = Link::open(&server.url(), LinkOptions::default()).expect("url");
    assert_eq!(job_names(&mut link).expect("names"), vec!["legacy"]);
    let scanned = scans(&mut con);
    for name in ["b", "a"] {
        let mut job = Job::new(
            Link::open(&server.url(), LinkOptions::default()).expect("url"),
            name,
        )
        .expect("job");
        job.create(T0, "run1", &JobSpec::default()).expect("create");
    }
    assert_eq!(
        job_names(&mut link).expect("names"),
        vec!["a", "b", "legacy"]
    );
    let mut b = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "b",
    )
    .expect("job");
    b.drop_job(T0, true).expect("drop");
    assert_eq!(job_names(&mut link).expect("names"), vec!["a", "legacy"]);
    assert_eq!(scans(&mut con), scanned, "listing scanned the keyspace");
}
