//! `redcount bench --raft`: a 3-node Raft group against one plain Redis: end-to-end throughput and
//! commits per second on the same corpora, the latency of single commits, and the time from
//! SIGKILLing the leader to the next acknowledged write.

use std::time::{Duration, Instant};

use redcount_protocol::{ClaimRequest, Format, Job, JobSpec, Link, LinkOptions, NewTask, Now};
use redcount_server::raft_group::ChildGroup;
use redcount_worker::WorkerOptions;

use super::{run_job, tempfile_dir, two_worker_job, write_corpora, BenchOptions};

/// A 3-node group of this benchmark's children, in a temp dir of its own.
struct BenchGroup {
    nodes: ChildGroup,
    _dir: tempfile::TempDir,
}

impl BenchGroup {
    fn start(exe: &std::path::Path) -> anyhow::Result<BenchGroup> {
        let dir = tempfile_dir()?;
        let nodes = ChildGroup::start(&dir.path().join("g"), 3, exe, &[])?;
        Ok(BenchGroup { nodes, _dir: dir })
    }
}

/// Runs the benchmark and prints Markdown tables.
pub fn bench_raft(options: &BenchOptions) -> anyhow::Result<()> {
    let corpora = write_corpora(options)?;
    let (small, large) = (&corpora.small, &corpora.large);

    println!("| corpus | coordinator | wall s | MB/s | commits | commits/s | vs plain |");
    println!("|---|---|---|---|---|---|---|");
    // One task per commit: as many commits as files, so commits/s means something.
    let one_task = WorkerOptions {
        batch_bytes: 1,
        ..WorkerOptions::default()
    };
    // (name, corpus, worker options, pack small files into tasks)
    let runs: [(&str, &std::path::PathBuf, WorkerOptions, bool); 3] = [
        ("small files", small, WorkerOptions::default(), true),
        (
            "small files, 1 file per task and commit",
            small,
            one_task,
            false,
        ),
        ("large files", large, WorkerOptions::default(), true),
    ];
    for (name, path, worker, pack) in runs {
        let mut plain = 0.0;
        for raft in [false, true] {
            let group = if raft {
                Some(BenchGroup::start(&options.worker_exe)?)
            } else {
                None
            };
            let mut common = two_worker_job(options, path, super::lease_secs(10));
            common.worker = worker.clone();
            common.redis = group.as_ref().map(|g| g.nodes.group.url());
            let s = run_job(common, pack)?;
            if !raft {
                plain = s.mb_per_second;
            }
            println!(
                "| {name} | {} | {:.2} | {:.1} | {} | {:.0} | {:.2} |",
                if raft { "raft, 3 nodes" } else { "plain redis" },
                s.wall_seconds,
                s.mb_per_second,
                s.commits,
                s.commits as f64 / s.wall_seconds,
                s.mb_per_second / plain
            );
        }
    }

    println!();
    println!("| one client: claim 1 task, commit 300 words, 1,000 times | commits/s | commit p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let server = redcount_server::RedisServer::start(Default::default())?;
    let plain = commit_latency(&server.url(), 1000)?;
    println!(
        "| plain redis | {:.0} | {:.3} | {:.3} | {:.3} |",
        plain.0, plain.1, plain.2, plain.3
    );
    let group = BenchGroup::start(&options.worker_exe)?;
    let raft = commit_latency(&group.nodes.group.url(), 1000)?;
    println!(
        "| raft, 3 nodes | {:.0} | {:.3} | {:.3} | {:.3} |",
        raft.0, raft.1, raft.2, raft.3
    );
    drop(group);

    println!();
    println!("| leader SIGKILL -> next acknowledged write | ms |");
    println!("|---|---|");
    let mut group = BenchGroup::start(&options.worker_exe)?;
    for trial in 1..=5 {
        let ms = leader_kill_to_ack(&mut group)?;
        println!("| trial {trial} | {ms:.0} |");
    }
    Ok(())
}

fn job_on(url: &str, name: &str) -> anyhow::Result<Job> {
    let mut job = Job::new(Link::open(url, LinkOptions::default())?, name)?;
    let spec = JobSpec {
        lease: redcount_protocol::Lease::new(Duration::from_secs(10))
            .map_err(anyhow::Error::msg)?,
        max_attempts: 3,
        ..JobSpec::default()
    };
    job.create(Now::Coordinator, "bench", &spec)?;
    Ok(job)
}

/// Commits per second and p50, p99, max latency (ms) of `n` real `rc_commit` calls, each of one
/// freshly claimed task with 300 distinct words, from one client.
fn commit_latency(url: &str, n: u64) -> anyhow::Result<(f64, f64, f64, f64)> {
    let mut job = job_on(url, "commits")?;
    let tasks: Vec<NewTask> = (1..=n)
        .map(|seq| NewTask {
            seq,
            path: format!("/bench/{seq}").into(),
            start: 0,
            end: 1000,
            format: Format::Text,
            version: None,
            more: Vec::new(),
            due_ms: None,
        })
        .collect();
    job.enqueue(Now::Coordinator, &tasks)?;
    job.seal(Now::Coordinator, n)?;
    let words: Vec<Vec<u8>> = (0..300).map(|i| format!("word{i}").into_bytes()).collect();
    let request = ClaimRequest {
        worker: "bench",
        lease: Duration::from_secs(60),
        max_tasks: 1,
        max_bytes: 1,
        max_attempts: 3,
        live_window: Duration::from_secs(60),
        speculate_factor: 0.0,
        speculate_min: Duration::ZERO,
    };
    let mut times = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for _ in 0..n {
        let claimed = job.claim(Now::Coordinator, &request)?;
        let Some(task) = claimed.tasks.first() else {
            anyhow::bail!("claim handed out no task");
        };
        let ids = [(task.id.clone(), 300)];
        let t = Instant::now();
        job.commit(
            Now::Coordinator,
            "bench",
            &ids,
            words.iter().map(|w| (w.as_slice(), 1u64)),
        )?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    Ok((rate, at(0.5), at(0.99), at(1.0)))
}

/// Kills the leader while a client writes in a loop; the time until its next write is acknowledged.
fn leader_kill_to_ack(group: &mut BenchGroup) -> anyhow::Result<f64> {
    let mut job = job_on(&group.nodes.group.url(), "failover")?;
    job.event(Now::Coordinator, "bench", "warm-up")?;
    let leader = group
        .nodes
        .group
        .leader()
        .ok_or_else(|| anyhow::anyhow!("no leader before the kill"))?;
    group.nodes.kill(leader);
    let killed = Instant::now();
    job.event(Now::Coordinator, "bench", "after the kill")?;
    let ms = killed.elapsed().as_secs_f64() * 1000.0;
    group.nodes.spawn(leader, true)?;
    // Let the restarted node catch up before the next trial.
    std::thread::sleep(Duration::from_secs(1));
    Ok(ms)
}

/// `redcount bench --raft-reads`: reads per second and their p50 on a 3-node group's leader at 1,
/// 10 and 50 clients, `GET` and `FCALL_RO rc_status`, with the read barrier shared by waiting
/// reads against a group where every read has a quorum round of its own (`--unbatched-reads`),
/// side by side in each run; medians of `runs` runs of 2 s per cell.
pub fn bench_raft_reads(options: &BenchOptions, runs: usize) -> anyhow::Result<()> {
    let shared = BenchGroup::start(&options.worker_exe)?;
    let dir = tempfile_dir()?;
    let unbatched = ChildGroup::start(
        &dir.path().join("g"),
        3,
        &options.worker_exe,
        &["--unbatched-reads"],
    )?;
    let groups = [("shared", &shared.nodes), ("unbatched", &unbatched)];
    for (_, g) in &groups {
        // rc_status needs a job to read.
        job_on(&g.group.url(), "reads")?;
    }
    println!("| read | clients | barrier | reads/s | p50 ms | p99 ms | vs unbatched |");
    println!("|---|---|---|---|---|---|---|");
    for op in [ReadOp::Get, ReadOp::Status] {
        for clients in [1usize, 10, 50] {
            let mut cells: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); groups.len()];
            for _ in 0..runs {
                for (i, (_, g)) in groups.iter().enumerate() {
                    cells[i].push(read_load(g, op, clients, Duration::from_secs(2))?);
                }
            }
            let medians: Vec<(f64, f64, f64)> = cells
                .iter()
                .map(|runs| {
                    let mid = |f: fn(&(f64, f64, f64)) -> f64| {
                        let mut v: Vec<f64> = runs.iter().map(f).collect();
                        v.sort_by(f64::total_cmp);
                        v[v.len() / 2]
                    };
                    (mid(|r| r.0), mid(|r| r.1), mid(|r| r.2))
                })
                .collect();
            for (i, (name, _)) in groups.iter().enumerate() {
                let (rate, p50, p99) = medians[i];
                println!(
                    "| {} | {clients} | {name} | {rate:.0} | {p50:.2} | {p99:.2} | {:.2}x |",
                    op.name(),
                    rate / medians[1].0
                );
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum ReadOp {
    Get,
    Status,
}

impl ReadOp {
    fn name(self) -> &'static str {
        match self {
            ReadOp::Get => "GET",
            ReadOp::Status => "FCALL_RO rc_status",
        }
    }

    fn command(self) -> redis::Cmd {
        match self {
            ReadOp::Get => redis::cmd("GET").arg("bench:nothing").clone(),
            ReadOp::Status => {
                let keys = redcount_protocol::JobKeys::new("reads").expect("a valid job name");
                redis::cmd("FCALL_RO")
                    .arg("rc_status")
                    .arg(keys.all().len())
                    .arg(&keys.all()[..])
                    .arg(redcount_protocol::now_ms())
                    .arg(15_000)
                    .clone()
            }
        }
    }
}

/// `clients` threads, each on its own connection to the leader, reading for `length`: reads per
/// second, p50 and p99 latency (ms).
fn read_load(
    g: &ChildGroup,
    op: ReadOp,
    clients: usize,
    length: Duration,
) -> anyhow::Result<(f64, f64, f64)> {
    let leader = g
        .group
        .leader()
        .ok_or_else(|| anyhow::anyhow!("the group has no leader"))?;
    let addr = g
        .group
        .nodes
        .iter()
        .find(|n| n.id == leader)
        .map(|n| n.addr.clone())
        .ok_or_else(|| anyhow::anyhow!("no address for leader {leader}"))?;
    // In memory only: the password never reaches a command line.
    let info = format!("redis://:{}@{addr}", g.group.password);
    let deadline = std::time::Instant::now() + length;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let info = info.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let mut con = redis::Client::open(info)?.get_connection()?;
                let cmd = op.command();
                let mut times = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let _: redis::Value = cmd.query(&mut con)?;
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Ok(times)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a reader thread panicked"))??,
        );
    }
    anyhow::ensure!(!all.is_empty(), "no read completed");
    all.sort_by(f64::total_cmp);
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    Ok((all.len() as f64 / length.as_secs_f64(), at(0.5), at(0.99)))
}
