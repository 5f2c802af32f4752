//! `redcount status` and `redcount top`: read-only looks at a job while it runs or after.

use std::io::IsTerminal;
use std::process::ExitCode;

use redcount_driver::report::{display_word, human_bytes};
use redcount_protocol::{now_ms, Job, Link, LinkOptions};

use crate::cli::{LatencyArgs, StatusArgs, TopArgs};

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let url = super::required_url(&args.redis)?;
    let Some(name) = args.job else {
        return list_jobs(&url);
    };
    let mut job = Job::new(Link::open(&url, LinkOptions::default())?, &name)?;
    let now = now_ms();
    let s = job.status(now, 15_000)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    let elapsed = now.saturating_sub(s.created_ms) as f64 / 1000.0;
    let state = if s.finished {
        "finished".to_string()
    } else {
        s.state.clone()
    };
    println!("job {name} ({state}) at {}", job.addr());
    println!(
        "tasks: {} total, {} done, {} in flight, {} not yet delivered, {} failed",
        s.tasks,
        s.done,
        s.in_flight,
        s.tasks.saturating_sub(s.delivered),
        s.dead
    );
    println!(
        "bytes: {} of {} done; {} words, {} distinct",
        human_bytes(s.done_bytes),
        human_bytes(s.bytes),
        s.words,
        s.distinct_words
    );
    println!(
        "workers: {} live; rate {:.1} MB/s over {:.1} s; {} recomputed, {} redelivered, {} duplicate commits",
        s.live_workers,
        s.done_bytes as f64 / 1e6 / elapsed.max(1e-3),
        elapsed,
        s.recomputed,
        s.redelivered,
        s.duplicates
    );
    Ok(ExitCode::SUCCESS)
}

fn list_jobs(url: &str) -> anyhow::Result<ExitCode> {
    let mut link = Link::open(url, LinkOptions::default())?;
    let mut keys: Vec<String> = link.call("SCAN", |con| {
        let iter = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg("rc:{*}:meta")
            .arg("COUNT")
            .arg(1000)
            .clone();
        iter.iter::<String>(con)
            .map(|it| it.filter_map(Result::ok).collect())
    })?;
    keys.sort();
    if keys.is_empty() {
        println!("no redcount jobs at {}", link.addr());
    }
    for key in keys {
        let name = key.trim_start_matches("rc:{").trim_end_matches("}:meta");
        println!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn top(args: TopArgs) -> anyhow::Result<ExitCode> {
    let url = super::required_url(&args.redis)?;
    let mut job = Job::new(Link::open(&url, LinkOptions::default())?, &args.job)?;
    if !job.exists()? {
        anyhow::bail!(
            "no job '{}' at {} (`redcount status` lists the jobs there)",
            args.job,
            job.addr()
        );
    }
    let terminal = std::io::stdout().is_terminal();
    loop {
        let status = job.status(now_ms(), 15_000)?;
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

pub fn latency(args: LatencyArgs) -> anyhow::Result<ExitCode> {
    use redcount_latency::{
        percentiles, plot, recoveries, rolling_median, rows::rows_from_done, write_csv,
    };
    let url = super::required_url(&args.redis)?;
    let mut job = Job::new(Link::open(&url, LinkOptions::default())?, &args.job)?;
    if !job.exists()? {
        anyhow::bail!(
            "no job '{}' at {} (`redcount status` lists the jobs there)",
            args.job,
            job.addr()
        );
    }
    let rows = rows_from_done(&job.done_records()?);
    let events = job.events()?;
    let start_ms = rows.first().map(|r| r.injected_at_ms).unwrap_or(0);
    // About a second of files, as `stream` does.
    let span_s = rows
        .last()
        .map(|r| r.injected_at_ms.saturating_sub(start_ms))
        .unwrap_or(0) as f64
        / 1000.0;
    let window = ((rows.len() as f64 / span_s.max(1.0)) as usize).clamp(5, 200);
    let median = rolling_median(&rows, window);
    if let Some(path) = &args.latency_out {
        write_csv(path, &rows)?;
    }
    if let Some(path) = &args.plot {
        let title = format!("{}: {} files", args.job, rows.len());
        plot::plot(
            path,
            &plot::Timeline {
                title: &title,
                rows: &rows,
                median: &median,
                events: &events,
                start_ms,
            },
        )?;
    }
    let p = percentiles(&rows);
    println!(
        "{} files: latency p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        p.count, p.p50, p.p90, p.p99, p.max
    );
    for r in recoveries(&rows, &events, window) {
        let at = r.event.at_ms.saturating_sub(start_ms) as f64 / 1000.0;
        let recovered = match r.recovery_ms {
            Some(ms) => format!("recovered after {:.2} s", ms as f64 / 1000.0),
            None => "not recovered".to_string(),
        };
        println!(
            "event {} at {at:.2} s ({}): peak {:.0} ms, {recovered}",
            r.event.kind, r.event.detail, r.peak_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}
