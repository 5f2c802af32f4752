//! Replicated Redis: a primary, two replicas and three Sentinels started by `cluster up`; the primary
//! is SIGKILLed mid-job, a replica is promoted, clients follow it, and the counts stay exact.

mod common;

use std::time::{Duration, Instant};

use common::*;
use redcount_protocol::{Job, Link, LinkOptions};
use redcount_server::sentinel::{cluster_down, cluster_up, Cluster};

/// Stops the cluster even when the test fails.
struct ClusterGuard(Cluster);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let _ = cluster_down(&self.0.dir);
    }
}

fn primary_port(cluster: &Cluster) -> Option<u16> {
    cluster.nodes.iter().copied().find(|&port| {
        redis::Client::open(cluster.node_url(port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
            .and_then(|mut con| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut con))
            .is_ok_and(
                |role| matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master"),
            )
    })
}

fn failover_run(sync_replicas: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let guard = ClusterGuard(cluster_up(&dir.path().join("cluster"), 2, 3).expect("cluster up"));
    let cluster = &guard.0;
    let url = cluster.url();
    let corpus = dir.path().join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 150, 500, 5_000, 51);
    let out = dir.path().join("out.tsv");
    let driver = redcount()
        .args([
            "run",
            "-w",
            "2",
            "--json",
            "-k",
            "0",
            "--job",
            "fo",
            "--worker-slow",
            "20ms",
            "--lease-ms",
            "2s",
            // One task per file: the primary is killed after 20 commits of the 150.
            "--no-pack",
        ])
        .args(["--sync-replicas", sync_replicas, "--redis", &url, "--out"])
        .arg(&out)
        .arg(&corpus)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start driver");
    // Kill the primary once the job is well under way.
    let old = primary_port(cluster).expect("a primary");
    let mut job =
        Job::new(Link::open(&url, LinkOptions::default()).expect("url"), "fo").expect("job");
    let deadline = Instant::now() + Duration::from_secs(30);
    while job
        .status(
            redcount_protocol::now_ms(),
            std::time::Duration::from_secs(10),
        )
        .map(|s| s.done)
        .unwrap_or(0)
        < 20
    {
        assert!(Instant::now() < deadline, "the job never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = cluster.pid(old).expect("primary pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill primary");
    let done = wait_success(driver, Duration::from_secs(90), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let new = primary_port(cluster).expect("a new primary");
    assert_ne!(new, old, "a replica was promoted");
    let v = json(&done);
    eprintln!(
        "--sync-replicas {sync_replicas}: failover {old} -> {new}; tasks recomputed {}, after a rollback {}, re-runs {}",
        v["recomputed"], v["recomputed_after_rollback"], v["recreated"]
    );
    v
}

#[test]
fn a_killed_primary_fails_over_and_the_job_stays_exact() {
    failover_run("0");
}

#[test]
fn with_sync_replicas_a_failover_loses_no_acknowledged_commit() {
    let v = failover_run("1");
    assert_eq!(v["recreated"], 0, "the promoted replica had the job");
}
