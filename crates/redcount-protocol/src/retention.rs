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
    let names = job_names(&mut link)?;
    // Every driver prunes on start: only jobs with a --keep can expire on their own, and which
    // those are is asked in one round trip (one per job was most of a small job's start on a
    // Redis of a hundred old jobs).
    let candidates = match older_than {
        None if !link.is_cluster() => with_keep(&mut link, names)?,
        _ => names,
    };
    for name in candidates {
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
    let Ok(status) = job.status(Now::Coordinator, crate::READER_LIVE_WINDOW) else {
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

/// The jobs among `names` whose spec has a `--keep`, read with one pipeline of `HGET`s (a single
/// server: a cluster's jobs live on different shards).
fn with_keep(link: &mut Link, names: Vec<String>) -> Result<Vec<String>> {
    let mut cmds = Vec::with_capacity(names.len());
    for name in &names {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(crate::JobKeys::new(name)?.meta)
            .arg(crate::spec::KEEP_MS);
        cmds.push(cmd);
    }
    if cmds.is_empty() {
        return Ok(names);
    }
    let replies = link.call("HGET cfg.keep_ms", |con| {
        con.pipeline(crate::JOBS_KEY, &cmds)
    })?;
    Ok(names
        .into_iter()
        .zip(replies)
        .filter(|(_, keep)| match keep {
            redis::Value::BulkString(bytes) => !bytes.is_empty(),
            redis::Value::Nil => false,
            // Anything else: read it the long way.
            _ => true,
        })
        .map(|(name, _)| name)
        .collect())
}
