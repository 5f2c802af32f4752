//! `redcount experiment latency`: the streaming lab's standard set of runs in one command. A sweep of
//! injection rates up to and past saturation, then, at half the highest stable rate, a killed worker
//! (with and without speculation, at several leases) and a straggler (with and without speculation).
//! Writes one CSV and one SVG plot per run and a markdown report that explains them.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use redcount_latency::LatencyRow;

use crate::bench::write_small;
use redcount_driver::faults::FaultPlan;
use redcount_driver::stream::{stream, StreamLimit, StreamOptions, StreamSummary};
use redcount_driver::JobOptions;
use redcount_input::FormatChoice;

/// What to run.
#[derive(Debug, Clone)]
pub struct ExperimentOptions {
    /// Where the CSVs, plots and report go.
    pub out_dir: PathBuf,
    /// Text the small input files are cut from.
    pub source: Vec<String>,
    /// Worker processes of every run.
    pub workers: usize,
    /// Injection rates of the sweep (files/s).
    pub rates: Vec<f64>,
    /// Injection time of every run.
    pub duration: Duration,
    /// Leases of the killed-worker runs without speculation.
    pub leases: Vec<Duration>,
    /// `png` or `svg`.
    pub plot_format: String,
    /// The redcount executable, to start workers with.
    pub worker_exe: PathBuf,
}

/// One run's line in the report.
struct Run {
    name: String,
    note: String,
    summary: StreamSummary,
    stable: bool,
}

/// Runs everything and writes `report.md` into the output directory; returns the report's path.
pub fn latency_experiment(options: &ExperimentOptions) -> anyhow::Result<PathBuf> {
    let out = &options.out_dir;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let corpus = tempfile::Builder::new()
        .prefix("redcount-experiment-")
        .tempdir()?;
    let text = crate::bench::source_text(&options.source)?;
    write_small(corpus.path(), &text, 300)?;
    let input = corpus.path().display().to_string();
    let secs = options.duration.as_secs_f64();

    let run =
        |name: &str, note: String, rate: f64, plan: FaultPlan, lease_ms: u64, speculate: f64| {
            let lease_ms = Duration::from_millis(lease_ms);
            eprintln!("experiment: {name}");
            let summary = one_run(options, &input, rate, plan, lease_ms, speculate, name)?;
            // Stable: latency not growing, and commits keeping up with injection.
            let stable = is_stable(&summary.rows) && summary.files_per_second >= 0.97 * rate;
            anyhow::Ok(Run {
                name: name.to_string(),
                note,
                summary,
                stable,
            })
        };

    let mut sweep = Vec::new();
    for &rate in &options.rates {
        sweep.push(run(
            &format!("rate-{rate:.0}"),
            format!("{rate:.0} files/s"),
            rate,
            FaultPlan::default(),
            5_000,
            3.0,
        )?);
    }
    let best = sweep
        .iter()
        .filter(|r| r.stable)
        .map(|r| r.summary.rate)
        .fold(0.0, f64::max);
    let half = if best > 0.0 {
        best / 2.0
    } else {
        options.rates.first().copied().unwrap_or(100.0) / 2.0
    };

    // Three kills per run: an idle worker holds nothing, so one kill may show nothing at all.
    let kills: Vec<Duration> = (1..=3)
        .map(|k| Duration::from_secs_f64(secs * k as f64 / 4.0))
        .collect();
    let kill = FaultPlan {
        kills,
        stragglers: vec![],
        restart_after: Some(Duration::from_millis(500)),
        ..FaultPlan::default()
    };
    let slow = FaultPlan {
        kills: vec![],
        stragglers: vec![(Duration::from_secs_f64(secs / 3.0), 4.0)],
        ..FaultPlan::default()
    };
    let mut faults = Vec::new();
    for &lease in &options.leases {
        let ms = lease.as_millis() as u64;
        let note = format!("3 kills, restart after 0.5 s, lease {ms} ms, no speculation");
        faults.push(run(
            &format!("kill-lease-{ms}ms"),
            note,
            half,
            kill.clone(),
            ms,
            0.0,
        )?);
    }
    let note = "3 kills, restart after 0.5 s, lease 5 s, speculation 3x p90".to_string();
    faults.push(run("kill-speculation", note, half, kill, 5_000, 3.0)?);
    let note = "one worker slowed 4x from 1/3 of the run, speculation 3x p90".to_string();
    faults.push(run(
        "straggler-speculation",
        note,
        half,
        slow.clone(),
        5_000,
        3.0,
    )?);
    let note = "one worker slowed 4x from 1/3 of the run, no speculation".to_string();
    faults.push(run(
        "straggler-no-speculation",
        note,
        half,
        slow,
        5_000,
        0.0,
    )?);

    let report = report(options, &sweep, best, half, &faults);
    let path = out.join("report.md");
    std::fs::write(&path, report).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[allow(clippy::too_many_arguments)]
fn one_run(
    options: &ExperimentOptions,
    input: &str,
    rate: f64,
    faults: FaultPlan,
    lease: Duration,
    speculate: f64,
    name: &str,
) -> anyhow::Result<StreamSummary> {
    let mut common = JobOptions::new(
        vec![input.to_string()],
        options.workers,
        options.worker_exe.clone(),
    );
    common.format = FormatChoice::Text;
    common.spec.lease = redcount_protocol::Lease::new(lease).map_err(anyhow::Error::msg)?;
    common.worker.speculate_factor = speculate;
    let stream_options = StreamOptions {
        common,
        rate,
        // About 50 micro-batches a second.
        batch: ((rate / 50.0).round() as usize).max(1),
        limit: StreamLimit::Duration(options.duration),
        latency_out: Some(options.out_dir.join(format!("{name}.csv"))),
        plot: Some(
            options
                .out_dir
                .join(format!("{name}.{}", options.plot_format)),
        ),
        plot_log_y: true,
        faults,
    };
    stream(&stream_options, &AtomicBool::new(false))
}

/// Stable = the p99 latency of the last third of the run (by injection time) is not much above the
/// first third's: a growing backlog shows as a growing p99.
pub fn is_stable(rows: &[LatencyRow]) -> bool {
    let third = rows.len() / 3;
    let p99 = |r: &[LatencyRow]| redcount_latency::percentiles(r).p99 as f64;
    p99(&rows[rows.len() - third..]) <= 1.5 * p99(&rows[..third]) + 50.0
}

fn report(
    options: &ExperimentOptions,
    sweep: &[Run],
    best: f64,
    half: f64,
    faults: &[Run],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Streaming latency experiment\n");
    let _ = writeln!(
        s,
        "Made by `redcount experiment latency` with {} workers, {:.0} s of injection per run, 300 input \
         files of 1-30 kB cut from the sample corpus and cycled, about 50 micro-batches a second. \
         Every run ends with the job finished; the CSV of each run has one row per file.\n",
        options.workers,
        options.duration.as_secs_f64()
    );
    let _ = writeln!(s, "## Rate sweep\n");
    let _ = writeln!(
        s,
        "Stable: the p99 of the last third of the run is at most 1.5x the first third's + 50 ms, and at \
         least 97% of the injection rate was committed.\n"
    );
    let _ = writeln!(s, "| run | injected/s | committed/s | MB/s | p50 ms | p90 ms | p99 ms | max ms | stable | plot |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for r in sweep {
        row(&mut s, r, &options.plot_format);
    }
    let _ = writeln!(
        s,
        "\nHighest stable rate: **{best:.0} files/s**. Fault runs below inject at half of it, {half:.0} files/s.\n"
    );
    let _ = writeln!(s, "## Faults at {half:.0} files/s\n");
    let _ = writeln!(s, "| run | what | p50 ms | p99 ms | max ms | re-delivered files (max latency) | events: recovery | plot |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for r in faults {
        let l = &r.summary.latency;
        let again: Vec<&LatencyRow> = r.summary.rows.iter().filter(|x| x.attempts > 1).collect();
        let again_max = again
            .iter()
            .map(|x| x.latency_ms)
            .max()
            .map(|m| format!(" ({m} ms)"))
            .unwrap_or_default();
        let recoveries: Vec<String> = r
            .summary
            .recoveries
            .iter()
            .filter(|x| x.event.kind != "restart-worker")
            .map(|x| match x.recovery_ms {
                Some(0) => format!("{}: none needed", x.event.kind),
                Some(ms) => format!("{}: {:.2} s", x.event.kind, ms as f64 / 1000.0),
                None => format!("{}: not within the run", x.event.kind),
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {}{} | {} | [plot]({}.{}) |",
            r.name,
            r.note,
            l.p50,
            l.p99,
            l.max,
            again.len(),
            again_max,
            recoveries.join("; "),
            r.name,
            options.plot_format
        );
    }
    s
}

fn row(s: &mut String, r: &Run, format: &str) {
    let l = &r.summary.latency;
    let mb = r.summary.summary.bytes as f64 / 1e6 / r.summary.injection_seconds.max(1e-9);
    let _ = writeln!(
        s,
        "| {} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | [plot]({}.{format}) |",
        r.name,
        r.note,
        r.summary.files_per_second,
        mb,
        l.p50,
        l.p90,
        l.p99,
        l.max,
        if r.stable { "yes" } else { "no" },
        r.name
    );
}
