//! A Redis as users have one: shared with other applications (100,000 keys of theirs: strings,
//! hashes, streams, sorted sets, and a few named like redcount's), holding 50 finished jobs of
//! earlier runs and what killed processes left (a job whose worker died holding its tasks and a
//! staged blob, a job never sealed). Tests that run on it check they left all of it as it was.

use std::path::PathBuf;
use std::time::Duration;

use redcount_protocol::{
    ClaimRequest, Format, Job, JobSpec, Link, LinkOptions, MergePolicy, NewTask, Now,
};
use redcount_server::{RedisServer, ServerOptions};

/// Other applications' keys.
pub const FOREIGN_KEYS: usize = 100_000;
/// Finished jobs of earlier runs.
pub const OLD_JOBS: usize = 50;

/// A started redis-server holding all of the above. Its slow log keeps every command over 10 ms,
/// so a test can check that redcount blocked it no longer than that ([`assert_never_blocked`]).
pub fn lived_in_redis() -> RedisServer {
    let server = RedisServer::start(ServerOptions {
        dir: None,
        config: vec![
            "slowlog-log-slower-than 10000".into(),
            "slowlog-max-len 1000".into(),
        ],
    })
    .expect("redis-server starts");
    let mut con = connect(&server.url());
    fill_foreign(&mut con);
    for i in 0..OLD_JOBS {
        finished_job(&server.url(), &format!("old-{i:02}"), i as u64);
    }
    leftovers(&server.url());
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query(&mut con)
        .expect("SLOWLOG RESET");
    server
}

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect")
}

fn fill_foreign(con: &mut redis::Connection) {
    let mut pipe = redis::pipe();
    for i in 0..FOREIGN_KEYS {
        match i % 10 {
            0..=6 => pipe
                .set(format!("app:cache:{i}"), format!("value {i}"))
                .ignore(),
            7 | 8 => pipe
                .hset_multiple(format!("app:user:{i}"), &[("name", "x"), ("age", "42")])
                .ignore(),
            _ if i % 20 == 9 => pipe
                .cmd("XADD")
                .arg(format!("app:events:{i}"))
                .arg("*")
                .arg("kind")
                .arg("click")
                .ignore(),
            _ => pipe.zadd(format!("app:rank:{i}"), "member", i).ignore(),
        };
        if i % 10_000 == 9_999 {
            pipe.query::<()>(con).expect("fill");
            pipe = redis::pipe();
        }
    }
    // Named like redcount's keys, but no job's.
    for key in ["rc:{notajob}:cache", "rc:jobs-notes", "rc:{x}:metadata"] {
        pipe.set(key, "someone else's").ignore();
    }
    pipe.query::<()>(con).expect("fill");
}

fn open_job(url: &str, name: &str) -> Job {
    Job::new(Link::open(url, LinkOptions::default()).expect("url"), name).expect("job")
}

fn tasks(n: u64) -> Vec<NewTask> {
    (1..=n)
        .map(|seq| NewTask {
            seq,
            path: PathBuf::from(format!("/data/old/{seq}.txt")),
            start: 0,
            end: 100,
            format: Format::Text,
            version: None,
            more: Vec::new(),
            due_ms: None,
        })
        .collect()
}

fn request(worker: &str) -> ClaimRequest<'_> {
    ClaimRequest {
        worker,
        lease: Duration::from_secs(5),
        max_tasks: 100,
        max_bytes: 1 << 30,
        max_attempts: 5,
        live_window: Duration::from_secs(15),
        speculate_factor: 0.0,
        speculate_min: Duration::ZERO,
    }
}

/// A job that ran to its end: tasks committed with partial counts, merged.
fn finished_job(url: &str, name: &str, seed: u64) {
    let mut job = open_job(url, name);
    job.create(Now::Coordinator, "old-run", &JobSpec::default())
        .expect("create");
    job.enqueue(Now::Coordinator, &tasks(1)).expect("enqueue");
    job.seal(Now::Coordinator, 1).expect("seal");
    let claimed = job
        .claim(Now::Coordinator, &request("old-worker"))
        .expect("claim");
    let ids: Vec<(String, u64)> = claimed.tasks.iter().map(|t| (t.id.clone(), 6)).collect();
    let words = [
        format!("old{seed}"),
        "shared".to_string(),
        format!("w{}", seed % 7),
    ];
    let blobs = redcount_count::partial::partition_blobs(
        words.iter().map(|w| (w.as_bytes(), 2u64)),
        redcount_protocol::DEFAULT_PARTITIONS.get(),
    );
    job.commit_parts(Now::Coordinator, "old-worker", &ids, &blobs)
        .expect("commit");
    let policy = MergePolicy {
        min_parts: 1,
        min_age: Duration::ZERO,
        max_parts: 64,
    };
    while redcount_worker::merge::merge_due(
        &mut job,
        Now::Coordinator,
        "old-worker",
        Duration::from_secs(5),
        &policy,
        8,
    )
    .expect("merge")
    .0 > 0
    {}
    let s = job
        .status(Now::Coordinator, Duration::from_secs(15))
        .expect("status");
    assert!(s.finished, "old job {name} finished: {s:?}");
}

/// A job whose only worker was killed holding its tasks (and a staged blob), and one never sealed.
fn leftovers(url: &str) {
    let mut job = open_job(url, "killed-mid-run");
    job.create(Now::Coordinator, "killed-run", &JobSpec::default())
        .expect("create");
    job.enqueue(Now::Coordinator, &tasks(5)).expect("enqueue");
    job.seal(Now::Coordinator, 5).expect("seal");
    job.claim(Now::Coordinator, &request("dead-worker"))
        .expect("claim");
    let keys = redcount_protocol::JobKeys::new("killed-mid-run").expect("keys");
    let mut con = connect(url);
    let _: i64 = redis::cmd("FCALL")
        .arg("rc_stage")
        .arg(9)
        .arg(&keys.all()[..])
        .arg("*")
        .arg("dead-worker")
        .arg("s1")
        .arg(0)
        .arg(0)
        .arg("half a blob")
        .query(&mut con)
        .expect("stage");
    let mut open = open_job(url, "never-sealed");
    open.create(Now::Coordinator, "open-run", &JobSpec::default())
        .expect("create");
    open.enqueue(Now::Coordinator, &tasks(3)).expect("enqueue");
}

/// Checks that every other application's key is still there, the old jobs are listed, and no
/// command took Redis longer than 10 ms.
pub fn assert_left_as_it_was(url: &str) {
    let mut con = connect(url);
    let mut cursor = 0u64;
    let mut foreign = 0usize;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("app:*")
            .arg("COUNT")
            .arg(10_000)
            .query(&mut con)
            .expect("SCAN");
        foreign += page.len();
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(
        foreign, FOREIGN_KEYS,
        "another application's keys were touched"
    );
    let names =
        redcount_protocol::job_names(&mut Link::open(url, LinkOptions::default()).expect("url"))
            .expect("job names");
    let old = names.iter().filter(|n| n.starts_with("old-")).count();
    assert_eq!(old, OLD_JOBS, "{names:?}");
    assert_never_blocked(&mut con);
}

/// No command in the slow log (over 10 ms) but those the fixture itself sent.
pub fn assert_never_blocked(con: &mut redis::Connection) {
    let log: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1000)
        .query(con)
        .expect("SLOWLOG");
    let slow: Vec<String> = log
        .iter()
        .map(|entry| format!("{entry:?}"))
        .filter(|e| !e.contains("SLOWLOG") && !e.contains("\"SCAN\""))
        .collect();
    assert!(slow.is_empty(), "commands over 10 ms: {slow:?}");
}
