//! Redis Cluster: jobs spread over the shards of a cluster `cluster up --shards` starts, each job on
//! the one shard its hash tag names; six at once are exact; `jobs`, `status` and `top` find them on
//! every shard; a shard's primary SIGKILLed mid-job is replaced by its replica and every job stays
//! exact.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use redcount_protocol::{Job, JobKeys, Link, LinkOptions};
use redcount_server::redis_cluster::{cluster_down, cluster_up, NodeState, ShardedCluster};

/// Stops the cluster even when the test fails.
struct ClusterGuard(ShardedCluster);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let _ = cluster_down(&self.0.dir);
    }
}

/// The primary serving job `name` now.
fn shard_of(cluster: &ShardedCluster, name: &str) -> u16 {
    let meta = JobKeys::new(name).expect("job name").meta;
    cluster
        .primary_of(&meta)
        .expect("a primary serves the job's slot")
}

/// Six jobs, each on a corpus of its own (seeded), and the corpora's files.
fn corpora(dir: &Path, files: usize) -> Vec<(String, PathBuf, Vec<PathBuf>)> {
    (1..=6)
        .map(|i| {
            let input = dir.join(format!("in-{i}"));
            let written =
                redcount_testkit::corpus::write_text_corpus(&input, files, 300, 3_000, 700 + i);
            (format!("cl-{i}"), input, written)
        })
        .collect()
}

/// Starts `redcount run` for one job on the cluster.
fn start_job(url: &str, name: &str, input: &Path, out: &Path, extra: &[&str]) -> Child {
    common::job()
        .workers(1)
        .json()
        .top(0)
        .job(name)
        .out(out)
        .args(extra)
        .input(input)
        .env("REDIS_URL", url)
        .spawn()
}

/// Sends a cluster bus message header in the clear and expects the connection to be closed without
/// a byte of reply (Redis answers a bus PING with a PONG; this bus wants a TLS handshake first).
fn assert_bus_refuses_plain_peers(bus: u16) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", bus)).expect("connect to the bus");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut ping = b"RCmb".to_vec();
    ping.resize(2256, 0);
    let _ = s.write_all(&ping);
    let mut reply = [0u8; 64];
    match s.read(&mut reply) {
        Ok(0) | Err(_) => {}
        Ok(n) => assert!(
            !reply[..n].starts_with(b"RCmb"),
            "bus {bus} answered a plain-text peer: {:?}",
            &reply[..n]
        ),
    }
}

#[test]
fn six_jobs_at_once_spread_over_three_shards_and_are_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster_dir = dir.path().join("cluster");
    // Through the binary, as a user would: `cluster up` prints the URL.
    let up = run_ok(&[
        "cluster",
        "up",
        "--shards",
        "3",
        "--replicas",
        "0",
        "--dir",
        cluster_dir.to_str().expect("utf-8 path"),
    ]);
    let guard = ClusterGuard(ShardedCluster::load(&cluster_dir).expect("cluster file"));
    let cluster = &guard.0;
    let url = String::from_utf8(up.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(url.starts_with("redis+cluster://:"), "{url}");
    assert_eq!(url, cluster.url());
    assert_secret_files_private(&cluster_dir, &cluster.password);
    // The bus takes only TLS with this cluster's certificate: a plain peer hears nothing back.
    for &bus in &cluster.bus_ports {
        assert_bus_refuses_plain_peers(bus);
    }

    let jobs = corpora(dir.path(), 60);
    let shards: std::collections::BTreeSet<u16> = jobs
        .iter()
        .map(|(name, ..)| shard_of(cluster, name))
        .collect();
    assert!(
        shards.len() >= 2,
        "the six job names all hash to one shard ({shards:?}): pick other names"
    );
    let drivers: Vec<(Child, PathBuf)> = jobs
        .iter()
        .map(|(name, input, _)| {
            let out = dir.path().join(format!("{name}.tsv"));
            (
                start_job(&url, name, input, &out, &["--split-bytes", "64KiB"]),
                out,
            )
        })
        .collect();
    for ((child, out), (name, _, files)) in drivers.into_iter().zip(&jobs) {
        wait_success(child, Duration::from_secs(120), name);
        assert_same_counts(&oracle_count(files), &read_out_file(&out));
    }
    // Every job is found whichever shard holds it.
    let listed = String::from_utf8(run_ok(&["jobs", "--redis", &url]).stdout).expect("utf-8");
    for (name, ..) in &jobs {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(name.as_str()) && l.contains("finished")),
            "{name} missing from `jobs`:\n{listed}"
        );
    }
    for (name, _, files) in &jobs {
        let top =
            String::from_utf8(run_ok(&["top", "--redis", &url, "--job", name, "-k", "1"]).stdout)
                .expect("utf-8");
        let oracle = oracle_count(files);
        let (word, count) = oracle
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .expect("words");
        let expected = format!("{count}  {}", String::from_utf8_lossy(word));
        assert!(
            top.contains(&expected),
            "top of {name}: {top}\nexpected {expected}"
        );
    }
    let status = String::from_utf8(
        run_ok(&[
            "cluster",
            "status",
            "--dir",
            cluster_dir.to_str().expect("utf-8"),
        ])
        .stdout,
    )
    .expect("utf-8");
    assert_eq!(
        status
            .lines()
            .filter(|l| l.contains("primary of slots"))
            .count(),
        3,
        "{status}"
    );
    run_ok(&[
        "cluster",
        "down",
        "--dir",
        cluster_dir.to_str().expect("utf-8"),
    ]);
    assert!(cluster.nodes.iter().all(|&p| cluster.pid(p).is_none()));
}

#[test]
fn a_killed_primary_is_replaced_by_its_replica_and_every_job_stays_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let guard = ClusterGuard(cluster_up(&dir.path().join("cluster"), 3, 1).expect("cluster up"));
    let cluster = &guard.0;
    let url = cluster.url();
    let jobs = corpora(dir.path(), 80);
    let target = shard_of(cluster, &jobs[0].0);
    let on_target = jobs
        .iter()
        .filter(|(name, ..)| shard_of(cluster, name) == target)
        .count();
    let drivers: Vec<(Child, PathBuf)> = jobs
        .iter()
        .map(|(name, input, _)| {
            let out = dir.path().join(format!("{name}.tsv"));
            // One task per file, each 10 ms of CPU: the jobs last seconds, and the kill lands in
            // the middle of the first one. Leases shorter than the failover: they run down only
            // while a primary serves (library/leases.lua, lease_clock).
            let extra = ["--no-pack", "--worker-slow", "10ms", "--lease", "1s"];
            (start_job(&url, name, input, &out, &extra), out)
        })
        .collect();
    let mut job = Job::new(
        Link::open(&url, LinkOptions::default()).expect("url"),
        &jobs[0].0,
    )
    .expect("job");
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        if let Ok(s) = job.status(redcount_protocol::now_ms(), Duration::from_secs(10)) {
            if s.done >= 15 {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "the job never got going");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        at_kill.done < at_kill.tasks,
        "the job was over before its primary was killed: make it longer"
    );
    let pid = cluster.pid(target).expect("primary pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the primary");
    let mut recomputed = 0;
    for ((child, out), (name, _, files)) in drivers.into_iter().zip(&jobs) {
        let done = wait_success(child, Duration::from_secs(120), name);
        assert_same_counts(&oracle_count(files), &read_out_file(&out));
        recomputed += json(&done)["recomputed"].as_u64().unwrap_or(0);
    }
    // The replica of the killed primary serves its slots now.
    let views = cluster.views();
    assert!(
        views.iter().any(|v| v.port == target && v.state.is_none()),
        "{views:?}"
    );
    let new = shard_of(cluster, &jobs[0].0);
    assert_ne!(new, target, "a replica was promoted: {views:?}");
    assert!(matches!(
        views
            .iter()
            .find(|v| v.port == new)
            .and_then(|v| v.state.clone()),
        Some(NodeState::Primary { .. })
    ));
    eprintln!(
        "killed primary {target} ({on_target} of 6 jobs on it), promoted {new}; tasks recomputed: {recomputed}"
    );
}
