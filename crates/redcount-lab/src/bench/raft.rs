//! `redcount bench --raft`: a 3-node Raft group against one plain Redis: end-to-end throughput and
//! commits per second on the same corpora, the latency of single commits, and the time from
//! SIGKILLing the leader to the next acknowledged write.

use std::time::{Duration, Instant};

use redcount_protocol::{now_ms, ClaimRequest, Format, Job, JobSpec, Link, LinkOptions, NewTask};
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
            let mut common = two_worker_job(options, path, Duration::from_secs(10));
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
        lease: Duration::from_secs(10),
        max_attempts: 3,
        ..JobSpec::default()
    };
    job.create(now_ms(), "bench", &spec)?;
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
            more: Vec::new(),
        })
        .collect();
    job.enqueue(now_ms(), &tasks)?;
    job.seal(now_ms(), n)?;
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
        let claimed = job.claim(now_ms(), &request)?;
        let Some(task) = claimed.tasks.first() else {
            anyhow::bail!("claim handed out no task");
        };
        let ids = [(task.id.clone(), 300)];
        let t = Instant::now();
        job.commit(
            now_ms(),
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
    job.event(now_ms(), "bench", "warm-up")?;
    let leader = group
        .nodes
        .group
        .leader()
        .ok_or_else(|| anyhow::anyhow!("no leader before the kill"))?;
    group.nodes.kill(leader);
    let killed = Instant::now();
    job.event(now_ms(), "bench", "after the kill")?;
    let ms = killed.elapsed().as_secs_f64() * 1000.0;
    group.nodes.spawn(leader, true)?;
    // Let the restarted node catch up before the next trial.
    std::thread::sleep(Duration::from_secs(1));
    Ok(ms)
}
