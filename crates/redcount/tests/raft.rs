//! The Raft-replicated coordinator: a group of `redcount raft-node` processes that this test starts
//! on loopback, killed and restarted (leader included), partly stopped, wiped and partitioned while a
//! job runs. Every run must equal the independent count, recompute nothing, and leave every
//! replica's Redis with the same data (DEBUG DIGEST).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use redcount_server::raft_group::{ChildGroup, Group};
use redcount_testkit::corpus::{write_text_corpus, Rng};

/// A group whose node processes are this test's children, killed when it ends (even by a panic).
struct TestGroup {
    nodes: ChildGroup,
    group: Group,
    _dir: tempfile::TempDir,
}

impl TestGroup {
    fn start(size: usize, snapshot_every: u64) -> TestGroup {
        let dir = tempfile::tempdir().expect("temp dir");
        let every = snapshot_every.to_string();
        let nodes = ChildGroup::start(
            &dir.path().join("group"),
            size,
            Path::new(env!("CARGO_BIN_EXE_redcount")),
            &["--snapshot-every", &every],
        )
        .expect("start raft-nodes and elect a leader");
        TestGroup {
            group: nodes.group.clone(),
            nodes,
            _dir: dir,
        }
    }

    fn node(&self, id: u64) -> &redcount_server::raft_group::NodeSpec {
        self.group.node(id).expect("node id")
    }

    fn spawn(&mut self, id: u64, init: bool) {
        self.nodes.spawn(id, init).expect("start raft-node");
    }

    /// SIGKILL: the node's Redis dies with it; only its log and snapshot remain.
    fn kill(&mut self, id: u64) {
        self.nodes.kill(id);
    }

    fn status(&self, id: u64) -> Option<BTreeMap<String, String>> {
        self.group.status(self.node(id))
    }

    fn leader(&self) -> Option<u64> {
        self.group.leader()
    }

    fn applied(&self, id: u64) -> Option<u64> {
        self.status(id)?.get("applied_index")?.parse().ok()
    }

    fn connect(&self, id: u64) -> redis::Connection {
        let con = redis::Client::open(self.group.node_url(self.node(id)))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect to node");
        con.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        con
    }

    /// Waits until every node applied the same index, then returns each node's DEBUG DIGEST.
    fn converged_digests(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let applied: Vec<Option<u64>> = self
                .group
                .nodes
                .iter()
                .map(|n| self.applied(n.id))
                .collect();
            let first = applied[0];
            if first.is_some() && applied.iter().all(|a| *a == first) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not converge: applied {applied:?}\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.group
            .nodes
            .iter()
            .map(|n| {
                redis::cmd("DEBUG")
                    .arg("DIGEST")
                    .query::<String>(&mut self.connect(n.id))
                    .expect("digest")
            })
            .collect()
    }

    /// The end of every node's log, for failure messages.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for n in &self.group.nodes {
            let text = std::fs::read_to_string(n.dir.with_extension("log")).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- node {} ---\n", n.id));
            for (i, l) in lines.iter().enumerate() {
                if l.contains("panicked") {
                    out.push_str(&lines[i..(i + 3).min(lines.len())].join("\n"));
                    out.push('\n');
                }
            }
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn assert_replicas_identical(&self) {
        let digests = self.converged_digests();
        assert!(
            digests.iter().all(|d| *d == digests[0]) && !digests[0].starts_with("0000000000"),
            "replicas differ: {digests:?}"
        );
    }
}

/// Starts `redcount run` against the group; returns the child and the output path.
fn start_job(g: &TestGroup, dir: &Path, job: &str, corpus: &Path, slow: &str) -> (Child, PathBuf) {
    // Leases well above a failover (about a second): no worker dies in these tests, so an expired
    // lease would only mean the coordinator was away too long, which is not what they measure.
    start_job_with(g, dir, job, corpus, slow, "6s")
}

fn start_job_with(
    g: &TestGroup,
    dir: &Path,
    job: &str,
    corpus: &Path,
    slow: &str,
    lease: &str,
) -> (Child, PathBuf) {
    let out = dir.join(format!("{job}.tsv"));
    let child = redcount()
        // No speculation: a stalled coordinator makes every running task look like a straggler, and
        // a speculative copy would count as recomputed without any commit having been lost.
        .args([
            "run",
            "-w",
            "2",
            "--json",
            "--job",
            job,
            "--lease-ms",
            lease,
        ])
        .args(["--speculate-factor", "0"])
        // Merges all the time, so node kills also land while partitions are being merged.
        .args(["--merge-after", "100ms"])
        .args(["--worker-slow", slow, "--redis", &g.group.url(), "--out"])
        .arg(&out)
        .arg(corpus)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start driver");
    (child, out)
}

fn finished(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(Some(_)))
}

/// Every acknowledged write survived: nothing recounted, nothing rolled back, no re-run.
fn assert_nothing_recomputed(v: &serde_json::Value) {
    assert_eq!(v["recomputed"], 0, "tasks recomputed: {v}");
    assert_eq!(v["recomputed_after_rollback"], 0, "rolled back: {v}");
    assert_eq!(v["recreated"], 0, "job re-run: {v}");
}

/// Waits until a node other than `old` leads; returns it.
fn wait_for_new_leader(g: &TestGroup, old: u64, why: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = g
            .group
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|&id| id != old)
            .find(|&id| g.status(id).is_some_and(|s| s["role"] == "leader"));
        if let Some(id) = found {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader while {old} is {why}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends a write of `text` (an event of job `job`) straight to one node and checks it is refused as
/// a retryable error, not acknowledged.
fn assert_write_refused(con: &mut redis::Connection, job: &str, text: &str) {
    let keys = redcount_protocol::JobKeys::new(job).expect("keys");
    let write: redis::RedisResult<redis::Value> = redis::cmd("FCALL")
        .arg("rc_event")
        .arg(keys.all().len())
        .arg(&keys.all()[..])
        .arg(redcount_protocol::now_ms())
        .arg("probe")
        .arg(text)
        .query(con);
    let err = write.expect_err("a deposed or cut-off leader acknowledged a write");
    assert!(
        matches!(err.code(), Some("TRYAGAIN") | Some("MOVED")),
        "unexpected refusal: {err}"
    );
}

/// Checks that no replica recorded the event `text` of job `job` (read on node `id`, after the
/// replicas converged).
fn assert_event_nowhere(g: &TestGroup, id: u64, job: &str, text: &str) {
    let keys = redcount_protocol::JobKeys::new(job).expect("keys");
    let events: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg(keys.all()[8])
        .arg("-")
        .arg("+")
        .query(&mut g.connect(id))
        .expect("events");
    assert!(
        !format!("{events:?}").contains(text),
        "a refused write was applied: {text}"
    );
}

#[test]
fn killing_and_restarting_nodes_leader_included_keeps_counts_exact_and_recomputes_nothing() {
    let mut g = TestGroup::start(3, 200);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 500, 1_000, 12_000, 71);
    let (mut driver, out) = start_job(&g, dir.path(), "chaos", &corpus, "40ms");
    let mut rng = Rng::new(5);
    let (mut kills, mut leader_kills) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(100);
    while !finished(&mut driver) && Instant::now() < deadline && kills < 40 {
        std::thread::sleep(Duration::from_millis(rng.range(500, 2000)));
        // Every other round the leader, otherwise a random node.
        let victim = match (kills % 2 == 0).then(|| g.leader()).flatten() {
            Some(leader) => {
                leader_kills += 1;
                leader
            }
            None => rng.range(1, 4),
        };
        g.kill(victim);
        kills += 1;
        std::thread::sleep(Duration::from_millis(rng.range(200, 800)));
        g.spawn(victim, false);
    }
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&done);
    eprintln!("{kills} node kills ({leader_kills} of the leader): {v}");
    assert!(
        leader_kills >= 3,
        "the job ended before the leader was killed three times"
    );
    assert!(
        v["merges"].as_u64().expect("merges") >= 20,
        "merges ran all through the kills: {v}"
    );
    assert_nothing_recomputed(&v);
    g.assert_replicas_identical();
}

#[test]
fn a_paused_leader_wakes_up_as_a_follower_and_acknowledges_nothing() {
    // SIGSTOP is a leader that freezes (a long GC pause, a stalled VM): it does not know it was
    // replaced, and must not acknowledge anything when it wakes up.
    let g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 150, 1_000, 8_000, 75);
    let (driver, out) = start_job(&g, dir.path(), "pause", &corpus, "30ms");
    std::thread::sleep(Duration::from_millis(1000));
    let old = g.leader().expect("a leader");
    let mut old_con = g.connect(old);
    let pid = nix::unistd::Pid::from_raw(g.nodes.pid(old).expect("the leader runs") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let new = wait_for_new_leader(&g, old, "paused");
    std::thread::sleep(Duration::from_millis(1000));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    // The first thing the woken node hears is a write: it must not acknowledge it.
    assert_write_refused(&mut old_con, "pause", "sent to a paused leader");
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    g.assert_replicas_identical();
    assert_event_nowhere(&g, new, "pause", "sent to a paused leader");
}

#[test]
fn five_nodes_survive_two_failures_at_once_leader_included() {
    // 2f+1 = 5 survives f = 2: the leader and another node die together, the other three carry on.
    let mut g = TestGroup::start(5, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 200, 1_000, 8_000, 77);
    let (mut driver, out) = start_job(&g, dir.path(), "five", &corpus, "30ms");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !finished(&mut driver),
        "the job finished before the failures"
    );
    let leader = g.leader().expect("a leader");
    let other = (1..=5).find(|&id| id != leader).expect("another node");
    g.kill(leader);
    g.kill(other);
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    g.spawn(leader, false);
    g.spawn(other, false);
    g.assert_replicas_identical();
}

#[test]
fn with_two_of_three_nodes_down_the_job_stalls_and_resumes_when_one_returns() {
    let mut g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 200, 1_000, 8_000, 72);
    // Leases longer than the outage: time goes on while nothing commits, and renewals cannot
    // commit either, so with short leases the held tasks would (rightly) be handed out again.
    let (mut driver, out) = start_job_with(&g, dir.path(), "stall", &corpus, "30ms", "60s");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !finished(&mut driver),
        "the job finished before the nodes went down"
    );
    let leader = g.leader().expect("a leader");
    let other = (1..=3).find(|&id| id != leader).expect("a follower");
    let survivor = (1..=3)
        .find(|&id| id != leader && id != other)
        .expect("a survivor");
    g.kill(leader);
    g.kill(other);
    std::thread::sleep(Duration::from_millis(500));
    let before = g.applied(survivor).expect("survivor answers");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        g.applied(survivor),
        Some(before),
        "a lone node applied new entries: nothing may commit without a majority"
    );
    assert_ne!(g.leader(), Some(survivor), "a lone node must not lead");
    assert!(
        !finished(&mut driver),
        "the job finished without a majority"
    );
    g.spawn(other, false);
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    g.spawn(leader, false);
    g.assert_replicas_identical();
}

#[test]
fn a_wiped_node_rejoins_from_a_snapshot() {
    // Snapshots every 10 entries: the log a wiped node would need is long gone.
    let mut g = TestGroup::start(3, 10);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 200, 1_000, 8_000, 73);
    let wiped = 3;
    g.kill(wiped);
    std::fs::remove_dir_all(&g.node(wiped).dir).expect("wipe the node");
    let (driver, out) = start_job(&g, dir.path(), "wipe", &corpus, "0ms");
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    // The others compacted their logs past the start.
    let leader = g.leader().expect("a leader");
    let snapshot = g.status(leader).expect("status")["snapshot_index"].clone();
    assert_ne!(snapshot, "none", "the leader took no snapshot");
    g.spawn(wiped, false);
    g.assert_replicas_identical();
    let s = g.status(wiped).expect("the wiped node answers");
    assert_ne!(
        s["snapshot_index"], "none",
        "it caught up from a snapshot: {s:?}"
    );
}

#[test]
fn an_isolated_leader_stops_acknowledging_and_a_new_one_takes_over() {
    let g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 200, 1_000, 8_000, 74);
    let (mut driver, out) = start_job(&g, dir.path(), "part", &corpus, "30ms");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !finished(&mut driver),
        "the job finished before the partition"
    );
    let old = g.leader().expect("a leader");
    let mut old_con = g.connect(old);
    let _: String = redis::cmd("RAFT.ISOLATE")
        .arg(1)
        .query(&mut old_con)
        .expect("isolate");
    // The other two elect a new leader.
    let new = wait_for_new_leader(&g, old, "isolated");
    // The old leader acknowledges nothing: a write sent straight to it is refused, not committed.
    assert_write_refused(&mut old_con, "part", "sent to an isolated leader");
    let _: String = redis::cmd("RAFT.ISOLATE")
        .arg(0)
        .query(&mut old_con)
        .expect("heal");
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    g.assert_replicas_identical();
    // The probe never happened anywhere: no replica recorded it.
    assert_event_nowhere(&g, new, "part", "sent to an isolated leader");
}

#[test]
fn cluster_up_raft_serves_jobs_refuses_nondeterminism_and_goes_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gdir = dir.path().join("g");
    let up = run_ok(&[
        "cluster",
        "up",
        "--raft",
        "3",
        "--dir",
        gdir.to_str().expect("utf-8"),
    ]);
    let url = String::from_utf8_lossy(&up.stdout).trim().to_string();
    let group = Group::load(&gdir).expect("group file");
    struct Down(PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = redcount_server::raft_group::group_down(&self.0);
        }
    }
    let _down = Down(gdir.clone());
    assert!(url.starts_with("redis+raft://"), "{url}");
    let corpus = redcount_testkit::corpus::sample_corpus();
    let files = files_below(&corpus);
    let counts = count_with(dir.path(), &[&corpus], &["--redis", &url, "--job", "sotu"]);
    assert_same_counts(&oracle_count(&files), &counts);
    let status = run_ok(&["cluster", "status", "--dir", gdir.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&status.stdout);
    let leaders = text
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("leader"))
        .count();
    assert_eq!(leaders, 1, "one node leads: {text}");
    assert_eq!(text.lines().count(), 4, "a header and three nodes: {text}");
    // Commands that would make replicas diverge are refused with a reason.
    let mut con = redis::Client::open(group.node_url(&group.nodes[0]))
        .and_then(|c| c.get_connection())
        .expect("connect");
    let err = redis::cmd("EVAL")
        .arg("return redis.call('TIME')")
        .arg(0)
        .query::<redis::Value>(&mut con)
        .expect_err("EVAL accepted");
    assert!(err.to_string().contains("not accepted"), "{err}");
    run_ok(&["cluster", "down", "--dir", gdir.to_str().expect("utf-8")]);
    assert!(
        group.nodes.iter().all(|n| group.pid(n).is_none()),
        "a node survived cluster down"
    );
    // Up again: the same group, from its logs and snapshots, with the finished job in it.
    let again = run_ok(&[
        "cluster",
        "up",
        "--raft",
        "3",
        "--dir",
        gdir.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        url,
        "the same group"
    );
    let link = redcount_protocol::Link::open(&url, redcount_protocol::LinkOptions::default())
        .expect("url");
    let mut job = redcount_protocol::Job::new(link, "sotu").expect("job");
    let kept: Counts = job.all_counts().expect("counts").into_iter().collect();
    assert_same_counts(&oracle_count(&files), &kept);
    // A crashed node is started again by `cluster up`, the others are left alone.
    let pid = group.pid(&group.nodes[0]).expect("node 1 runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill node 1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while group.pid(&group.nodes[0]).is_some() {
        assert!(Instant::now() < deadline, "node 1 did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    let third = run_ok(&[
        "cluster",
        "up",
        "--raft",
        "3",
        "--dir",
        gdir.to_str().expect("utf-8"),
    ]);
    assert!(
        String::from_utf8_lossy(&third.stderr).contains("started 1 of the 3 nodes"),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert!(
        group.nodes.iter().all(|n| group.pid(n).is_some()),
        "all three run again"
    );
}

/// Runs `redcount ARGS`, which must fail with `reason` in its message.
fn assert_refused(args: &[&str], reason: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(reason), "{args:?}: {stderr}");
}

#[test]
fn bad_raft_command_lines_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8");
    assert_refused(&["cluster", "up", "--raft", "2", "--dir", d], "odd number");
    let node = [
        "raft-node",
        "--dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--peers",
    ];
    let three = "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3";
    assert_refused(
        &[&node[..], &[three, "--id", "4"]].concat(),
        "does not list this node's id 4",
    );
    assert_refused(
        &[&node[..], &["1-127.0.0.1:1", "--id", "1"]].concat(),
        "is not id=host:port",
    );
    let nothing = run(&["cluster", "status", "--dir", d]);
    assert!(!nothing.status.success(), "status of an empty directory");
}

#[test]
fn a_stream_survives_its_raft_leader_being_killed_and_marks_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gdir = dir.path().join("g");
    let gdir_s = gdir.to_str().expect("utf-8").to_string();
    let up = run_ok(&["cluster", "up", "--raft", "3", "--dir", &gdir_s]);
    let url = String::from_utf8_lossy(&up.stdout).trim().to_string();
    struct Down(PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = redcount_server::raft_group::group_down(&self.0);
        }
    }
    let _down = Down(gdir.clone());
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 60, 500, 4_000, 76);
    let (out, lat) = (dir.path().join("out.tsv"), dir.path().join("lat.csv"));
    let o = run_ok(&[
        "stream",
        "--rate",
        "10",
        "--files",
        "60",
        "-w",
        "2",
        "--json",
        "--redis",
        &url,
        "--speculate-factor",
        "0",
        "--lease-ms",
        "6s",
        "--kill-raft-leader",
        "1500ms",
        "--raft-dir",
        &gdir_s,
        "--out",
        out.to_str().expect("utf-8"),
        "--latency-out",
        lat.to_str().expect("utf-8"),
        corpus.to_str().expect("utf-8"),
    ]);
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&o);
    assert_eq!(v["latency"]["count"], 60, "one latency row per file: {v}");
    assert_nothing_recomputed(&v);
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["kill-raft-leader", "restart-raft-node"], "{v}");
    let group = Group::load(&gdir).expect("group");
    assert!(
        group.nodes.iter().all(|n| group.pid(n).is_some()),
        "the killed node runs again"
    );
}
