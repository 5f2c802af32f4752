//! The library's functions called directly with synthetic `now` values, against a real redis-server
//! this test starts: claim, renew, expired leases, duplicate and partial commits, dead letters,
//! termination. No sleeping: time is an argument.

use std::path::PathBuf;
use std::time::Duration;

use redcount_protocol::{
    Aggregation, ClaimRequest, CommitOutcome, Deferral, Enqueued, Format, Job, JobKeys, JobSpec,
    Link, LinkOptions, MergePolicy, NewTask, Now, Piece, Status, STATUS_FIELDS,
};
use redcount_server::{RedisServer, ServerOptions};

mod commits;
mod failures;
mod leases;
mod lifecycle;
mod reads;
#[path = "../support/mod.rs"]
mod support;

const LEASE: u64 = 1_000;
const LEASE_D: Duration = Duration::from_millis(LEASE);
const T0: u64 = 1_700_000_000_000;

/// The default aggregation (partition blobs merged by workers): what users run is tested first.
fn spec(max_attempts: u32) -> JobSpec {
    JobSpec {
        lease: redcount_protocol::Lease::new(LEASE_D).expect("a lease"),
        max_attempts,
        ..JobSpec::default()
    }
}

/// The `--aggregate-in redis` job (ZINCRBY commits), for what only it has: `rc_commit`'s own
/// argument checks and `rc_top`.
fn zincrby_spec(max_attempts: u32) -> JobSpec {
    JobSpec {
        aggregation: Aggregation::Redis,
        ..spec(max_attempts)
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

/// A server and a job with `n` tasks of 100 bytes, sealed, in the default aggregation.
fn setup(n: u64, max_attempts: u32) -> (RedisServer, Job) {
    setup_with(n, spec(max_attempts))
}

/// [`setup`] of an `--aggregate-in redis` job.
fn setup_zincrby(n: u64, max_attempts: u32) -> (RedisServer, Job) {
    setup_with(n, zincrby_spec(max_attempts))
}

fn setup_with(n: u64, spec: JobSpec) -> (RedisServer, Job) {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut job = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "t",
    )
    .expect("job");
    assert_eq!(
        job.create(T0, "run1", &spec).expect("create"),
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

/// Commits tasks `ids` with `words` (their words shared out between them) as the job's workers do: partition blobs in
/// the default aggregation, ZINCRBY in the other.
fn commit(
    job: &mut Job,
    now: u64,
    worker: &str,
    ids: &[&str],
    words: &[(&[u8], u64)],
) -> CommitOutcome {
    // The words the tasks held: all of them, shared out as evenly as they go.
    let total: u64 = words.iter().map(|(_, n)| n).sum();
    let n = ids.len().max(1) as u64;
    let tasks: Vec<(String, u64)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.to_string(), total / n + u64::from(i == 0) * (total % n)))
        .collect();
    match job.layout().expect("layout") {
        (Aggregation::Workers, partitions) => {
            let blobs = redcount_count::partial::partition_blobs(words.iter().copied(), partitions);
            job.commit_parts(now, worker, &tasks, &blobs)
        }
        (Aggregation::Redis, _) => job.commit(now, worker, &tasks, words.iter().copied()),
    }
    .expect("commit")
}

/// `job` with every partition merged at `now`, as its workers merge (by a worker of its own,
/// `merger`), so its result holds every commit.
fn merged(job: &mut Job, now: u64) -> &mut Job {
    let at_once = MergePolicy {
        min_parts: 1,
        min_age: Duration::ZERO,
        max_parts: 64,
    };
    while redcount_worker::merge::merge_due(job, now, "merger", LEASE_D, &at_once, 64)
        .expect("merge")
        .0
        > 0
    {}
    job
}

fn status(job: &mut Job, now: u64) -> Status {
    job.status(now, 10 * LEASE_D).expect("status")
}

/// The count of `word` in the result, merged at `now`.
fn count_of(job: &mut Job, now: u64, word: &str) -> u64 {
    let all = merged(job, now).all_counts().expect("counts");
    all.iter()
        .find(|(w, _)| w == word.as_bytes())
        .map(|(_, n)| *n)
        .unwrap_or(0)
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

/// `job`, served up to `now` (see support::served_every).
fn served(job: &mut Job, now: u64) -> &mut Job {
    support::served_every(job, LEASE, now)
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
