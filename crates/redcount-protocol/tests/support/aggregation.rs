//! A job of the default (`workers`) aggregation set up for the protocol tests, and what a worker
//! does to it (claim one task, commit blobs, merge), with pinned times.

use std::path::PathBuf;
use std::time::Duration;

use redcount_count::partial;
use redcount_protocol::{
    ClaimRequest, Format, Job, JobSpec, Link, LinkOptions, MergePolicy, NewTask,
};
use redcount_server::{RedisServer, ServerOptions};

/// The pinned start of every test's clock.
pub const T0: u64 = 1_700_000_000_000;
/// Every task's lease.
pub const LEASE: Duration = Duration::from_secs(1);
/// The job's partitions.
pub const PARTITIONS: u32 = 2;

/// A job of `n` tasks, sealed, keeping every commit record.
pub fn setup(n: u64) -> (RedisServer, Job) {
    setup_with(n, 0)
}

/// A job of `n` tasks that keeps `history` commit records (0: all).
pub fn setup_with(n: u64, history: u64) -> (RedisServer, Job) {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let mut job = Job::new(
        Link::open(&server.url(), LinkOptions::default()).expect("url"),
        "p",
    )
    .expect("job");
    let spec = JobSpec {
        lease: redcount_protocol::Lease::new(LEASE).expect("a lease"),
        partitions: redcount_protocol::Partitions::clamped(PARTITIONS),
        history,
        ..JobSpec::default()
    };
    job.create(T0, "run1", &spec).expect("create");
    let tasks: Vec<NewTask> = (1..=n)
        .map(|seq| NewTask {
            seq,
            path: PathBuf::from(format!("/data/{seq}")),
            start: 0,
            end: 10,
            format: Format::Text,
            version: None,
            more: Vec::new(),
            due_ms: None,
        })
        .collect();
    job.enqueue(T0, &tasks).expect("enqueue");
    job.seal(T0, n).expect("seal");
    (server, job)
}

/// One task claimed by `worker` at `now` (its id), the job served up to then.
pub fn claim(job: &mut Job, now: u64, worker: &str) -> Vec<String> {
    let c = served(job, now)
        .claim(now, &request(worker))
        .expect("claim");
    c.tasks.into_iter().map(|t| t.id).collect()
}

/// What `worker` asks of a claim: one task at a time, no speculation.
pub fn request(worker: &str) -> ClaimRequest<'_> {
    ClaimRequest {
        worker,
        lease: LEASE,
        max_tasks: 1,
        max_bytes: u64::MAX / 4,
        max_attempts: 3,
        live_window: 10 * LEASE,
        speculate_factor: 0.0,
        speculate_min: Duration::ZERO,
    }
}

/// The blobs of `words` split over the job's partitions.
pub fn blobs(words: &[(&str, u64)]) -> Vec<(u32, Vec<u8>)> {
    partial::partition_blobs(words.iter().map(|(w, n)| (w.as_bytes(), *n)), PARTITIONS)
}

/// Merges every due partition as a worker does; returns how many merges were committed.
pub fn merge_all(job: &mut Job, now: u64, worker: &str, policy: &MergePolicy) -> u64 {
    let mut merged = 0;
    while let Some(claim) = served(job, now)
        .merge_claim(now, worker, LEASE, policy)
        .expect("merge claim")
    {
        assert!(
            redcount_worker::merge::merge_claimed(job, now, worker, &claim).expect("merge"),
            "a fresh merge commits"
        );
        merged += 1;
    }
    merged
}

/// Every count of the job's result, count descending.
pub fn counts(job: &mut Job) -> Vec<(String, u64)> {
    job.all_counts()
        .expect("counts")
        .into_iter()
        .map(|(w, n)| (String::from_utf8_lossy(&w).into_owned(), n))
        .collect()
}

/// `job`, served up to `now` (see super::served_every).
pub fn served(job: &mut Job, now: u64) -> &mut Job {
    super::served_every(job, LEASE.as_millis() as u64, now)
}
