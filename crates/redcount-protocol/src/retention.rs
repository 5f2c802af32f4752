//! Retention: which finished jobs have outlived how long they were to be kept (their own `--keep`,
//! or an operator's `--older-than`), and removing exactly those with `rc_drop`. Ages are on the
//! coordinator's clock (`finished_ms` against its `now`), so every host agrees on them.

use std::time::Duration;

use crate::{job_names, Job, Link, LinkOptions, Now, Result, Status};

/// A job past its retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The job's name.
    pub job: String,
    /// How long ago it finished.
    pub finished_ago: Duration,
    /// Keys removed (0 on a dry run).
    pub keys: u64,
}

/// Whether a job is past its retention: finished, and finished longer ago than `older_than` or,
/// without it, than its own `keep`. A running job never is, nor one kept until removed by hand.
pub fn is_expired(status: &Status, keep: Option<Duration>, older_than: Option<Duration>) -> bool {
    let Some(limit) = older_than.or(keep) else {
        return false;
    };
    status.finished && status.now_ms.saturating_sub(status.finished_ms) >= limit.as_millis() as u64
}

/// Finds (and unless `dry_run`, removes) the jobs at `url` past their retention. A job that goes
/// away or cannot be read meanwhile is skipped: another pruner may have removed it first.
pub fn prune(url: &str, older_than: Option<Duration>, dry_run: bool) -> Result<Vec<Expired>> {
    let mut link = Link::open(url, LinkOptions::default())?;
    let mut expired = Vec::new();
    for name in job_names(&mut link)? {
        let mut job = Job::new(link, &name)?;
        let found = prune_one(&mut job, older_than, dry_run);
        link = job.into_link();
        expired.extend(found?);
    }
    Ok(expired)
}

/// Job `job` if it is past its retention (removed unless `dry_run`); None when it is not, or when it
/// went away or could not be read meanwhile.
fn prune_one(
    job: &mut Job,
    older_than: Option<Duration>,
    dry_run: bool,
) -> Result<Option<Expired>> {
    let keep = job.spec().ok().and_then(|spec| spec.keep);
    // Kept until removed by hand: no need to read its status (every driver prunes on start, over
    // every job of its Redis, one round trip each).
    if keep.is_none() && older_than.is_none() {
        return Ok(None);
    }
    let Ok(status) = job.status(Now::Coordinator, Duration::from_secs(15)) else {
        return Ok(None);
    };
    if !is_expired(&status, keep, older_than) {
        return Ok(None);
    }
    let keys = if dry_run {
        0
    } else {
        match job.drop_job(Now::Coordinator, false) {
            Ok(keys) => keys,
            Err(crate::Error::NoJob { .. }) => return Ok(None),
            Err(err) => return Err(err),
        }
    };
    Ok(Some(Expired {
        job: job.name().to_string(),
        finished_ago: Duration::from_millis(status.now_ms.saturating_sub(status.finished_ms)),
        keys,
    }))
}
