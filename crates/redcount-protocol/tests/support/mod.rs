//! What the protocol tests share: keeping a job served between pinned times, and a job of the
//! default aggregation to call.
#![allow(dead_code)]

pub mod aggregation;

use redcount_protocol::{Job, JobKeys};

/// Keeps `job` served up to `now` as a live worker would, with a call every quarter of `lease_ms`
/// (an empty enqueue: it touches nothing but the job's clock), so that its lease clock follows `now`
/// (library/leases.lua, `lease_clock`), and returns it for the call at `now`.
pub fn served_every(job: &mut Job, lease_ms: u64, now: u64) -> &mut Job {
    let meta = JobKeys::new(job.name()).expect("job keys").meta;
    let heard: Option<u64> = job
        .query(
            "HGET heard_ms",
            redis::cmd("HGET").arg(meta).arg("heard_ms"),
        )
        .expect("heard_ms");
    let step = (lease_ms / 4).max(1);
    let mut t = heard.unwrap_or(now);
    while t + step < now {
        t += step;
        job.enqueue(t, &[])
            .expect("an empty enqueue keeps the job served");
    }
    job
}
