//! `redcount status` and `redcount top`: read-only looks at a job while it runs or after.

use std::io::IsTerminal;
use std::process::ExitCode;

use redcount_driver::report::{at_least, display_word, human_bytes, write_counts, write_out_file};
use redcount_protocol::{job_names, Job, Link, LinkOptions, Now};

use redcount_latency::Analysis;

use crate::cli::{CountsArgs, LatencyArgs, RedisArg, StatusArgs, TopArgs};

/// `status` and `top` do not know the job's lease: workers heard from within the default lease's
/// window count as live.
const INSPECT_LIVE_WINDOW: std::time::Duration = redcount_protocol::READER_LIVE_WINDOW;

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let url = super::required_url(&args.redis)?;
    let Some(name) = args.job else {
        return list_jobs(&url);
    };
    let mut job = Job::new(Link::open(&url, LinkOptions::default())?, &name)?;
    let s = job.status(Now::Coordinator, INSPECT_LIVE_WINDOW)?;
    if args.json {
        // `state` as the text view says it (running, finished, failed, cancelled), the
        // library's own (open, sealed ...) as `stage`.
        let mut value = serde_json::to_value(&s)?;
        value["stage"] = value["state"].clone();
        value["state"] = s.phase().into();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    // The run's own span on the coordinator's clock: until it finished, or until now.
    let end = if s.finished_ms > 0 {
        s.finished_ms
    } else {
        s.now_ms
    };
    let elapsed = end.saturating_sub(s.created_ms) as f64 / 1000.0;
    let state = if s.finished {
        format!(
            "{} {:.0} s ago",
            s.phase(),
            s.now_ms.saturating_sub(s.finished_ms) as f64 / 1000.0
        )
    } else {
        format!("{}, {}", s.phase(), s.state)
    };
    println!("job {name} ({state}) at {}", job.addr());
    println!(
        "tasks: {} total, {} done, {} in flight, {} not yet delivered; {} input(s) failed",
        s.tasks,
        s.done,
        s.in_flight,
        s.tasks.saturating_sub(s.delivered),
        s.failed_inputs()
    );
    if !s.stop_reason.is_empty() {
        println!("ended without a result: {}", s.stop_reason);
    }
    println!(
        "bytes: {} of {} done; {} words, {} distinct",
        human_bytes(s.done_bytes),
        human_bytes(s.bytes),
        s.words,
        s.distinct_words
    );
    let workers = if s.finished {
        "done".to_string()
    } else {
        format!("{} live", s.live_workers)
    };
    println!(
        "workers: {workers}; rate {:.1} MB/s over {:.2} s; {} re-delivered, {} speculative copies, {} duplicate commits",
        s.done_bytes as f64 / 1e6 / elapsed.max(1e-3),
        elapsed,
        s.redelivered,
        s.speculated,
        s.duplicates
    );
    Ok(ExitCode::SUCCESS)
}

fn list_jobs(url: &str) -> anyhow::Result<ExitCode> {
    let mut link = Link::open(url, LinkOptions::default())?;
    let names = job_names(&mut link)?;
    if names.is_empty() {
        println!("no redcount jobs at {}", link.addr());
    }
    for name in names {
        println!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn top(args: TopArgs) -> anyhow::Result<ExitCode> {
    let mut job = open_existing(&args.redis, &args.job)?;
    let terminal = std::io::stdout().is_terminal();
    loop {
        let status = job.status(Now::Coordinator, INSPECT_LIVE_WINDOW)?;
        let top = job.top(args.k)?;
        let mut out = String::new();
        if args.follow {
            if terminal {
                // Redraw in place: clear the screen, cursor home.
                out.push_str("\x1b[2J\x1b[H");
            }
            out.push_str(&format!(
                "job {}: {} of {} tasks done, {} words{}\n",
                args.job,
                status.done,
                status.tasks,
                status.words,
                if status.finished { " (finished)" } else { "" }
            ));
        }
        let width = top
            .iter()
            .map(|(_, n)| n.to_string().len())
            .max()
            .unwrap_or(5)
            .max(5);
        out.push_str(&format!("{:>width$}  word\n", "count"));
        for (word, n) in top {
            out.push_str(&format!("{n:>width$}  {}\n", display_word(&word)));
        }
        print!("{out}");
        if !args.follow || status.finished {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

pub fn counts(args: CountsArgs) -> anyhow::Result<ExitCode> {
    let mut job = open_existing(&args.redis, &args.job)?;
    let status = job.status(Now::Coordinator, INSPECT_LIVE_WINDOW)?;
    if !status.finished {
        eprintln!(
            "job '{}' is not finished: these are the counts merged so far",
            args.job
        );
    }
    let all = job.all_counts()?;
    let all = at_least(&all, args.min_count);
    match &args.out {
        Some(path) => write_out_file(path, all)?,
        None => {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            write_counts(&mut out, all)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn latency(args: LatencyArgs) -> anyhow::Result<ExitCode> {
    let mut job = open_existing(&args.redis, &args.job)?;
    let analysis = Analysis::new(&job.done_records()?, job.events()?);
    let title = format!("{}: {} files", args.job, analysis.rows.len());
    analysis.write(
        args.latency_out.as_deref(),
        args.plot.as_deref(),
        &title,
        args.log_y,
    )?;
    let p = &analysis.percentiles;
    println!(
        "{} files: latency p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        p.count, p.p50, p.p90, p.p99, p.max
    );
    for r in &analysis.recoveries {
        println!("{}", r.describe(analysis.start_ms()));
    }
    Ok(ExitCode::SUCCESS)
}

/// A job that must already exist.
fn open_existing(redis: &RedisArg, name: &str) -> anyhow::Result<Job> {
    let url = super::required_url(redis)?;
    let mut job = Job::new(Link::open(&url, LinkOptions::default())?, name)?;
    if !job.exists()? {
        anyhow::bail!(
            "no job '{name}' at {} (`redcount status` lists the jobs there)",
            job.addr()
        );
    }
    Ok(job)
}
