//! `redcount jobs`: the jobs in one Redis as a table, `jobs rm` to remove them exactly (the
//! library's `rc_drop`: the job's keys and nothing else, on any kind of coordinator), and `jobs
//! prune` to remove the finished ones past their retention.

use std::process::ExitCode;

use std::time::Duration;

use redcount_protocol::{job_names, scan_job_names, Job, Link, LinkOptions, Now, StopKind};

use crate::cli::{JobsAction, JobsArgs};

pub fn jobs(args: JobsArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        None => table(&super::required_url(&args.redis)?, args.scan),
        // `jobs rm J --redis U` and `jobs --redis U rm J` both work.
        Some(JobsAction::Rm { redis, jobs, force }) => {
            let given = if redis.redis.is_some() {
                &redis
            } else {
                &args.redis
            };
            remove(&super::required_url(given)?, &jobs, force)
        }
        Some(JobsAction::Cancel { redis, jobs }) => {
            let given = if redis.redis.is_some() {
                &redis
            } else {
                &args.redis
            };
            cancel(&super::required_url(given)?, &jobs)
        }
        Some(JobsAction::Prune {
            redis,
            older_than,
            dry_run,
        }) => {
            let given = if redis.redis.is_some() {
                &redis
            } else {
                &args.redis
            };
            prune(&super::required_url(given)?, older_than, dry_run)
        }
    }
}

fn prune(
    url: &str,
    older_than: Option<std::time::Duration>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let expired = redcount_protocol::prune(url, older_than, dry_run)?;
    if expired.is_empty() {
        println!("no finished job past its retention");
    }
    for e in &expired {
        let ago =
            humantime::format_duration(std::time::Duration::from_secs(e.finished_ago.as_secs()));
        if dry_run {
            println!("would remove job {} (finished {ago} ago)", e.job);
        } else {
            println!(
                "removed job {} (finished {ago} ago, {} keys)",
                e.job, e.keys
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn table(url: &str, scan: bool) -> anyhow::Result<ExitCode> {
    let mut link = Link::open(url, LinkOptions::default())?;
    if scan {
        scan_job_names(&mut link)?;
    }
    let names = job_names(&mut link)?;
    if names.is_empty() {
        println!("no redcount jobs at {}", link.addr());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<9} {:>15} {:>7} {:>9}",
        "job", "state", "tasks done", "failed", "age"
    );
    for name in names {
        let mut job = Job::new(link, &name)?;
        let status = job.status(Now::Coordinator, redcount_protocol::READER_LIVE_WINDOW);
        link = job.into_link();
        let s = match status {
            Ok(s) => s,
            // Removed since it was registered (by another client, or an eviction).
            Err(redcount_protocol::Error::NoJob { .. }) => continue,
            Err(err) => return Err(err.into()),
        };
        let state = s.phase();
        let age_s = s.now_ms.saturating_sub(s.created_ms) / 1000;
        let age = match age_s {
            0..=119 => format!("{age_s} s"),
            120..=7199 => format!("{} min", age_s / 60),
            _ => format!("{} h", age_s / 3600),
        };
        // (No key count: counting a job's keys would scan the whole keyspace once per job.)
        println!(
            "{:<24} {:<9} {:>15} {:>7} {:>9}",
            name,
            state,
            format!("{}/{}", s.done + s.dead, s.to_settle()),
            s.failed_inputs(),
            age,
        );
        if !s.stop_reason.is_empty() {
            println!("  {}", s.stop_reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Cancels each job (`rc_stop`): its workers exit at their next call, a driver waiting on it
/// reports it cancelled. A job already over is left as it is, and said so.
fn cancel(url: &str, names: &[String]) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let reason = "cancelled with `redcount jobs cancel`";
    for name in names {
        let mut job = Job::new(Link::open(url, LinkOptions::default())?, name)?;
        let outcome = job
            .stop(Now::Coordinator, StopKind::Cancelled, reason)
            .and_then(|stopped| Ok((stopped, job.status(Now::Coordinator, Duration::ZERO)?)));
        match outcome {
            Ok((true, s)) => println!(
                "cancelled job {name} at {} of {} tasks; its workers exit at their next call \
                 (`redcount jobs rm {name}` removes its keys)",
                s.done + s.dead,
                s.tasks
            ),
            Ok((false, s)) => println!("job {name} was already over ({})", s.phase()),
            Err(err) => {
                eprintln!("error: {err}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn remove(url: &str, names: &[String], force: bool) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for name in names {
        let mut job = Job::new(Link::open(url, LinkOptions::default())?, name)?;
        match job.drop_job(Now::Coordinator, force) {
            Ok(n) => println!("removed job {name} ({n} keys)"),
            Err(err) => {
                eprintln!("error: {err}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
