//! `redcount bench --hosts`: one job, a driver and two workers, on loopback against the same job
//! across three hosts (network namespaces joined by a bridge, root only): Redis on `db`, the driver
//! and one worker on `a`, one worker on `b`, with 0, 1 and 10 ms round trips between the workers
//! and Redis. The delay comes from the test kit's proxy on `db` (half the round trip each way, per
//! chunk), because the kernels of these VMs have no `tc netem`; the 0 ms row measures the proxy
//! and the bridge alone. Medians of `runs`; each ratio is against the loopback run of the same
//! round, measured side by side.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use redcount_server::{RedisServer, ServerOptions};
use redcount_testkit::netns::{Host, Lan};
use redcount_testkit::Fault;

use super::{
    check_counts, corpus_dir, median, source_text, word_counts, write_large, write_small,
    BenchOptions,
};

/// Where the driver and the two workers run: the machine's own namespace, or hosts `a` and `b`
/// (each worker's clock offset for faketime, if any).
enum Placement<'a> {
    Loopback,
    Hosts(&'a Host, &'a Host, [Option<&'static str>; 2]),
}

/// One measured setup: medians over the runs.
#[derive(Debug, Clone)]
pub struct HostsRow {
    /// `small` or `large`.
    pub corpus: &'static str,
    /// `loopback`, or `3 hosts, N ms`.
    pub setup: &'static str,
    /// The round trip the proxy adds (ms; None on loopback).
    pub rtt_ms: Option<f64>,
    /// Median wall time of the driver (s).
    pub wall: f64,
    /// Input MB per second at that wall time.
    pub mb_per_second: f64,
    /// Median of the per-round ratios against the loopback run of the same round.
    pub vs_loopback: Option<f64>,
}

/// How `measure_hosts` runs its jobs.
#[derive(Debug, Clone, Copy)]
pub struct HostsPlan {
    /// Runs per setup (medians are reported).
    pub runs: usize,
    /// Run the workers on hosts a and b with their clocks 45 s behind and 90 s ahead (faketime).
    pub skewed_clocks: bool,
    /// Write every job's --out and compare it word by word with an in-process count.
    pub verify: bool,
}

/// Measures and prints the table.
pub fn bench_hosts(options: &BenchOptions, runs: usize) -> anyhow::Result<()> {
    let plan = HostsPlan {
        runs,
        skewed_clocks: false,
        verify: false,
    };
    println!("driver + 2 workers; round trip between the workers and Redis; medians of {runs}");
    println!(
        "{:<8} {:<16} {:>9} {:>8} {:>13}",
        "corpus", "setup", "wall s", "MB/s", "vs loopback"
    );
    for row in measure_hosts(options, plan)?.0 {
        println!(
            "{:<8} {:<16} {:>9.2} {:>8.1} {:>13}",
            row.corpus,
            row.setup,
            row.wall,
            row.mb_per_second,
            row.vs_loopback
                .map_or("-".to_string(), |r| format!("{r:.2}x time"))
        );
    }
    Ok(())
}

/// Runs a driver and two workers on loopback, then across three hosts at 0, 1 and 10 ms round
/// trips, on a small-file and a large-file corpus; returns the rows and how many jobs' counts were
/// checked exact (0 unless `plan.verify`).
pub fn measure_hosts(
    options: &BenchOptions,
    plan: HostsPlan,
) -> anyhow::Result<(Vec<HostsRow>, u64)> {
    let (_temp, dir) = corpus_dir(options)?;
    let text = source_text(&options.source)?;
    let (small, large) = (dir.join("small"), dir.join("large"));
    write_small(&small, &text, options.small_files)?;
    write_large(&large, &text, options.large_mb * 1_000_000)?;

    let mut lan = Lan::new().context(
        "measuring across hosts puts Redis and the workers in network namespaces of their own: run it as root",
    )?;
    let db = lan.host("db")?;
    let a = lan.host("a")?;
    let b = lan.host("b")?;
    let password = redcount_server::random_hex(16);
    let (mut db_redis, proxy, hosts_url) = db.redis_behind_proxy(&dir, &password)?;
    let local = RedisServer::start(ServerOptions::default())?;

    let settings: [(&str, f64, Fault); 3] = [
        ("3 hosts, 0 ms", 0.0, Fault::Pass),
        (
            "3 hosts, 1 ms",
            1.0,
            Fault::Delay(Duration::from_micros(500)),
        ),
        (
            "3 hosts, 10 ms",
            10.0,
            Fault::Delay(Duration::from_millis(5)),
        ),
    ];
    let clocks = if plan.skewed_clocks {
        [Some("-45s"), Some("+90s")]
    } else {
        [None, None]
    };
    let mut rows = Vec::new();
    let mut exact = 0u64;
    let mut job = 0usize;
    for (name, corpus) in [("small", &small), ("large", &large)] {
        let bytes = dir_bytes(corpus)?;
        let oracle = if plan.verify {
            Some(word_counts(&redcount_input::expand::expand(&[corpus
                .display()
                .to_string()])?)?)
        } else {
            None
        };
        let mut walls: Vec<Vec<f64>> = vec![Vec::new(); settings.len() + 1];
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
        let mut one = |url: &str, placement: &Placement, job: usize| -> anyhow::Result<f64> {
            let out = oracle.as_ref().map(|_| dir.join(format!("job-{job}.tsv")));
            let wall = run_once(options, url, placement, corpus, job, out.as_deref())?;
            if let (Some(oracle), Some(out)) = (&oracle, &out) {
                check_counts(out, oracle)?;
                exact += 1;
            }
            Ok(wall)
        };
        for _ in 0..plan.runs {
            job += 1;
            let base = one(&local.url(), &Placement::Loopback, job)?;
            walls[0].push(base);
            for (i, (_, _, fault)) in settings.iter().enumerate() {
                proxy.set(*fault);
                job += 1;
                let wall = one(&hosts_url, &Placement::Hosts(&a, &b, clocks), job)?;
                walls[i + 1].push(wall);
                ratios[i].push(wall / base);
            }
        }
        let row = |setup: &'static str, rtt_ms, wall: f64, vs_loopback| HostsRow {
            corpus: name,
            setup,
            rtt_ms,
            wall,
            mb_per_second: bytes as f64 / 1e6 / wall,
            vs_loopback,
        };
        rows.push(row("loopback", None, median(walls[0].clone()), None));
        for (i, (label, rtt, _)) in settings.iter().enumerate() {
            rows.push(row(
                label,
                Some(*rtt),
                median(walls[i + 1].clone()),
                Some(median(ratios[i].clone())),
            ));
        }
    }
    drop(proxy);
    let _ = db_redis.kill();
    let _ = db_redis.wait();
    Ok((rows, exact))
}

/// One job over `corpus`: a driver with `--workers 0` and two `redcount worker`s, placed as said;
/// returns the driver's wall time.
fn run_once(
    options: &BenchOptions,
    url: &str,
    placement: &Placement,
    corpus: &Path,
    job: usize,
    out: Option<&Path>,
) -> anyhow::Result<f64> {
    let name = format!("bench-hosts-{job}");
    let corpus_s = corpus.display().to_string();
    let mut driver_args = vec!["run", "--workers", "0", "--job", &name, "--json", "-k", "0"];
    let out_s = out.map(|p| p.display().to_string());
    if let Some(out) = &out_s {
        driver_args.extend(["--out", out]);
    }
    driver_args.push(&corpus_s);
    let worker_args = ["worker", "--job", &name];
    let (driver, workers) = match placement {
        Placement::Loopback => (
            Command::new(&options.worker_exe),
            [
                Command::new(&options.worker_exe),
                Command::new(&options.worker_exe),
            ],
        ),
        Placement::Hosts(a, b, clocks) => {
            let on = |host: &Host, clock: Option<&str>| match clock {
                Some(offset) => {
                    let mut cmd = host.command("faketime");
                    cmd.arg("-f").arg(offset).arg(&options.worker_exe);
                    cmd
                }
                None => host.command(&options.worker_exe),
            };
            (on(a, clocks[0]), [on(a, clocks[0]), on(b, clocks[1])])
        }
    };
    let spawn = |mut cmd: Command, args: &[&str], out: Stdio| -> anyhow::Result<Child> {
        cmd.args(args)
            .env("REDIS_URL", url)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", options.worker_exe.display()))
    };
    let driver = spawn(driver, &driver_args, Stdio::piped())?;
    let mut children = Vec::new();
    for w in workers {
        children.push(spawn(w, &worker_args, Stdio::null())?);
    }
    let out = driver
        .wait_with_output()
        .context("waiting for the driver")?;
    for mut child in children {
        let _ = child.wait();
    }
    if !out.status.success() {
        bail!("the job {name} failed ({})", out.status);
    }
    // Every run starts from the same Redis: a driver prunes over the jobs already there on start,
    // one round trip each, which would make later runs pay for earlier ones.
    let rm = match placement {
        Placement::Loopback => Command::new(&options.worker_exe),
        Placement::Hosts(a, _, _) => a.command(&options.worker_exe),
    };
    let removed = spawn(rm, &["jobs", "rm", &name], Stdio::null())?
        .wait()
        .context("waiting for jobs rm")?;
    if !removed.success() {
        bail!("could not remove the job {name} after its run");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading the driver's --json summary")?;
    summary["wall_seconds"]
        .as_f64()
        .context("no wall_seconds in the driver's summary")
}

/// The bytes of every file under `dir`.
pub(super) fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let files = redcount_input::expand::expand(&[dir.display().to_string()])?;
    Ok(files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum())
}
