//! `redcount experiment hosts`: the multi-host measurement as a report. Redis on one network
//! namespace, the driver and a worker on a second, a worker on a third, their clocks 45 s behind and
//! 90 s ahead (faketime), at 0, 1 and 10 ms round trips to Redis, against the same jobs on loopback;
//! every job's counts are compared word by word with an in-process count. Writes `hosts.md`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use crate::bench::{measure_hosts, BenchOptions, HostsPlan, HostsRow};

/// The slowdown the issue allows at 10 ms round trips.
const TARGET: f64 = 1.2;

/// Runs the measurement and writes `out_dir/hosts.md`; returns its path.
pub fn hosts_experiment(
    options: &BenchOptions,
    runs: usize,
    out_dir: &std::path::Path,
) -> anyhow::Result<PathBuf> {
    let skewed_clocks = which("faketime");
    if !skewed_clocks {
        eprintln!(
            "experiment hosts: faketime is not installed; the hosts keep this machine's clock"
        );
    }
    let plan = HostsPlan {
        runs,
        skewed_clocks,
        verify: true,
    };
    let (rows, exact) = measure_hosts(options, plan)?;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let path = out_dir.join("hosts.md");
    std::fs::write(&path, report(&rows, exact, runs, options, skewed_clocks))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn which(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

fn report(
    rows: &[HostsRow],
    exact: u64,
    runs: usize,
    options: &BenchOptions,
    skewed: bool,
) -> String {
    let mut r = String::new();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(r, "# Workers on other hosts\n");
    let _ = writeln!(
        r,
        "`redcount experiment hosts --runs {runs} --small-files {} --large-mb {}` on a machine with {cpus} \
         CPUs. Three network namespaces joined by a bridge (addresses 10.99.0.0/24, used only inside \
         them): Redis on `db`; the driver (`run --workers 0`) and one worker on `a`; one worker on `b`. \
         {} Every client reaches Redis through the test kit's proxy on `db`, which delays each chunk by \
         half the round trip each way (this kernel has no `tc netem`). Loopback is the same job with \
         all three processes on this machine's loopback, run in the same round. Medians of {runs} runs.\n",
        options.small_files,
        options.large_mb,
        if skewed {
            "Host `a`'s processes run 45 s behind and `b`'s 90 s ahead (faketime)."
        } else {
            "faketime was not installed: the hosts kept this machine's clock."
        }
    );
    let _ = writeln!(r, "| corpus | setup | wall s | MB/s | time vs loopback |");
    let _ = writeln!(r, "|---|---|---:|---:|---:|");
    for row in rows {
        let _ = writeln!(
            r,
            "| {} | {} | {:.2} | {:.1} | {} |",
            row.corpus,
            row.setup,
            row.wall,
            row.mb_per_second,
            row.vs_loopback
                .map_or("-".to_string(), |x| format!("{x:.2}x"))
        );
    }
    let _ = writeln!(
        r,
        "\n**Exactness:** all {exact} jobs' counts equal an in-process count of their corpus, word by word.\n"
    );
    let _ = writeln!(
        r,
        "**Against the target** (at most {TARGET}x loopback's time at 10 ms round trips):\n"
    );
    for corpus in ["small", "large"] {
        let base = rows
            .iter()
            .find(|x| x.corpus == corpus && x.rtt_ms.is_none());
        let far = rows
            .iter()
            .find(|x| x.corpus == corpus && x.rtt_ms == Some(10.0));
        if let (Some(base), Some(far), Some(ratio)) = (base, far, far.and_then(|f| f.vs_loopback)) {
            // What the added time is worth in round trips: the calls the job waits for in sequence.
            let added = far.wall - base.wall;
            let verdict = if ratio <= TARGET { "met" } else { "missed" };
            let detail = if added > 0.0 {
                format!(
                    "the {added:.2} s added are about {:.0} round trips of 10 ms waited for one after \
                     another (each worker's claims and commits, a batch of merges three round trips \
                     for up to 8 partitions, the driver's status polls one each)",
                    added / 0.010
                )
            } else {
                "the median times differ by less than the runs' own spread (the ratio is the median \
                 of each round's ratio, side by side)"
                    .to_string()
            };
            let _ = writeln!(r, "- {corpus} files: {ratio:.2}x, {verdict}; {detail}.");
        }
    }
    let _ = writeln!(
        r,
        "\nThese jobs last a few seconds, so a fixed chain of calls shows. Merges go in batches (one \
         claim call, one pipeline of reads, one of commits), a commit carries the claim of the next \
         batch, and a status poll is one round trip; what is left is a fixed cost of a job (first \
         claims, the polls until the driver sees the job finished, the last merges, the result \
         read), which a longer job spreads over more work."
    );
    r
}
