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

use super::{corpus_dir, median, source_text, write_large, write_small, BenchOptions};

/// Where the driver and the two workers run: the machine's own namespace, or hosts `a` and `b`.
enum Placement<'a> {
    Loopback,
    Hosts(&'a Host, &'a Host),
}

/// Measures and prints the table.
pub fn bench_hosts(options: &BenchOptions, runs: usize) -> anyhow::Result<()> {
    let (_temp, dir) = corpus_dir(options)?;
    let text = source_text(&options.source)?;
    let (small, large) = (dir.join("small"), dir.join("large"));
    write_small(&small, &text, options.small_files)?;
    write_large(&large, &text, options.large_mb * 1_000_000)?;

    let mut lan = Lan::new().context(
        "bench --hosts puts Redis and the workers in network namespaces of their own: run it as root",
    )?;
    let db = lan.host("db")?;
    let a = lan.host("a")?;
    let b = lan.host("b")?;
    let password = redcount_server::random_hex(16);
    let (mut db_redis, proxy, hosts_url) = db.redis_behind_proxy(&dir, &password)?;
    let local = RedisServer::start(ServerOptions::default())?;

    let settings: [(&str, Fault); 3] = [
        ("3 hosts, 0 ms", Fault::Pass),
        ("3 hosts, 1 ms", Fault::Delay(Duration::from_micros(500))),
        ("3 hosts, 10 ms", Fault::Delay(Duration::from_millis(5))),
    ];
    println!("driver + 2 workers; round trip between the workers and Redis; medians of {runs}");
    println!(
        "{:<8} {:<16} {:>9} {:>8} {:>13}",
        "corpus", "setup", "wall s", "MB/s", "vs loopback"
    );
    let mut job = 0usize;
    for (name, corpus) in [("small", &small), ("large", &large)] {
        let bytes = dir_bytes(corpus)?;
        let mut walls: Vec<Vec<f64>> = vec![Vec::new(); settings.len() + 1];
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
        for _ in 0..runs {
            job += 1;
            let base = run_once(options, &local.url(), &Placement::Loopback, corpus, job)?;
            walls[0].push(base);
            for (i, (_, fault)) in settings.iter().enumerate() {
                proxy.set(*fault);
                job += 1;
                let wall = run_once(options, &hosts_url, &Placement::Hosts(&a, &b), corpus, job)?;
                walls[i + 1].push(wall);
                ratios[i].push(wall / base);
            }
        }
        let row = |label: &str, wall: f64, ratio: Option<f64>| {
            println!(
                "{name:<8} {label:<16} {wall:>9.2} {:>8.1} {:>13}",
                bytes as f64 / 1e6 / wall,
                ratio.map_or("-".to_string(), |r| format!("{r:.2}x time"))
            )
        };
        row("loopback", median(walls[0].clone()), None);
        for (i, (label, _)) in settings.iter().enumerate() {
            row(
                label,
                median(walls[i + 1].clone()),
                Some(median(ratios[i].clone())),
            );
        }
    }
    drop(proxy);
    let _ = db_redis.kill();
    let _ = db_redis.wait();
    Ok(())
}

/// One job over `corpus`: a driver with `--workers 0` and two `redcount worker`s, placed as said;
/// returns the driver's wall time.
fn run_once(
    options: &BenchOptions,
    url: &str,
    placement: &Placement,
    corpus: &Path,
    job: usize,
) -> anyhow::Result<f64> {
    let name = format!("bench-hosts-{job}");
    let corpus_s = corpus.display().to_string();
    let driver_args = [
        "run",
        "--workers",
        "0",
        "--job",
        &name,
        "--json",
        "-k",
        "0",
        &corpus_s,
    ];
    let worker_args = ["worker", "--job", &name];
    let (driver, workers) = match placement {
        Placement::Loopback => (
            Command::new(&options.worker_exe),
            [
                Command::new(&options.worker_exe),
                Command::new(&options.worker_exe),
            ],
        ),
        Placement::Hosts(a, b) => (
            a.command(&options.worker_exe),
            [
                a.command(&options.worker_exe),
                b.command(&options.worker_exe),
            ],
        ),
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
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading the driver's --json summary")?;
    summary["wall_seconds"]
        .as_f64()
        .context("no wall_seconds in the driver's summary")
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let files = redcount_input::expand::expand(&[dir.display().to_string()])?;
    Ok(files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum())
}
