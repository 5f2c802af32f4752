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
use redcount_testkit::raft_group::{Links, ProxiedGroup};
use redcount_testkit::Fault;

/// A group whose node processes are this test's children, killed when it ends (even by a panic).
struct TestGroup {
    nodes: ChildGroup,
    group: Group,
    /// With [`TestGroup::start_behind_proxies`]: the links between the nodes.
    links: Links,
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
            links: Links::default(),
            _dir: dir,
        }
    }

    /// A group of `size` whose nodes reach each other only through fault proxies, one per direction
    /// of every pair (the test kit's ProxiedGroup); clients reach nodes directly.
    fn start_behind_proxies(size: usize) -> TestGroup {
        let dir = tempfile::tempdir().expect("temp dir");
        let ProxiedGroup { nodes, links } = ProxiedGroup::start(
            &dir.path().join("group"),
            size,
            Path::new(env!("CARGO_BIN_EXE_redcount")),
            &["--snapshot-every", "200"],
        )
        .expect("start raft-nodes behind proxies and elect a leader");
        TestGroup {
            group: nodes.group.clone(),
            nodes,
            links,
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

    /// The leader, waiting out an election in progress (a loaded machine may hold one at any time).
    fn current_leader(&self) -> u64 {
        self.group
            .wait_for_leader(Duration::from_secs(15))
            .expect("a leader within 15 s")
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

/// Starts `redcount run` against the group; returns the child and the output path. 2 s leases,
/// shorter than some of the outages below: leases run down only while the group serves
/// (library.lua, lease_clock), so no failover alone may take a task from a live worker.
fn start_job(
    g: &TestGroup,
    dir: &Path,
    job: &str,
    corpus: &Path,
    slow: &str,
    extra: &[&str],
) -> (Child, PathBuf) {
    let out = dir.join(format!("{job}.tsv"));
    let child = common::job()
        .workers(2)
        .json()
        .job(job)
        .lease("2s")
        // No speculation: a copy of a task slowed by the shared CPUs would count as recomputed
        // without any commit having been lost.
        .flag("--speculate-factor", "0")
        // Merges all the time, so node kills also land while partitions are being merged.
        .merge_after("100ms")
        .args(extra)
        .worker_slow(slow)
        .redis(&g.group.url())
        .out(&out)
        .input(corpus)
        .spawn();
    (child, out)
}

fn finished(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(Some(_)))
}

/// Every acknowledged write survived and no live worker lost a lease: nothing re-delivered or
/// recounted, nothing rolled back, no re-run.
fn assert_nothing_recomputed(v: &serde_json::Value) {
    assert_eq!(v["redelivered"], 0, "tasks re-delivered: {v}");
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
    let (mut driver, out) = start_job(&g, dir.path(), "chaos", &corpus, "40ms", &[]);
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
    let (driver, out) = start_job(&g, dir.path(), "pause", &corpus, "30ms", &[]);
    std::thread::sleep(Duration::from_millis(1000));
    let old = g.current_leader();
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
    let (mut driver, out) = start_job(&g, dir.path(), "five", &corpus, "30ms", &[]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !finished(&mut driver),
        "the job finished before the failures"
    );
    let leader = g.current_leader();
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
    // 2 s leases and a longer outage: lease time stops while the group has no majority (nothing is
    // applied), so the held tasks stay with their live workers.
    let (mut driver, out) = start_job(&g, dir.path(), "stall", &corpus, "30ms", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !finished(&mut driver),
        "the job finished before the nodes went down"
    );
    let leader = g.current_leader();
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
    let (driver, out) = start_job(&g, dir.path(), "wipe", &corpus, "0ms", &[]);
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    // The others compacted their logs past the start.
    let leader = g.current_leader();
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
    let (mut driver, out) = start_job(&g, dir.path(), "part", &corpus, "30ms", &[]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !finished(&mut driver),
        "the job finished before the partition"
    );
    let old = g.current_leader();
    let mut old_con = g.connect(old);
    let _: String = redis::cmd("RAFT.ISOLATE")
        .arg(1)
        .query(&mut old_con)
        .expect("isolate");
    // The other two elect a new leader.
    let new = wait_for_new_leader(&g, old, "isolated");
    // The old leader acknowledges nothing: a write sent straight to it is refused, not committed.
    assert_write_refused(&mut old_con, "part", "sent to an isolated leader");
    // Nor does it serve a read, however many arrive at once and share its read rounds: each
    // would be stale now that the new leader commits without it.
    let url = g.group.node_url(g.node(old));
    let readers: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(url)
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
                    .expect("connect to the isolated leader");
                con.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let meta = redcount_protocol::JobKeys::new("part").expect("keys").meta;
                (0..2)
                    .map(|_| {
                        redis::cmd("HGET")
                            .arg(&meta)
                            .arg("done")
                            .query::<Option<String>>(&mut con)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for reader in readers {
        for read in reader.join().expect("reader") {
            assert!(read.is_err(), "an isolated leader served a read: {read:?}");
        }
    }
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
    // raft-group.json and the password file hold the group's password: 0600, both.
    assert!(assert_secret_files_private(&gdir, &group.password) >= 2);
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
    // `jobs rm` through the group: a replicated rc_drop, so every replica loses exactly the job.
    group
        .wait_for_leader(Duration::from_secs(15))
        .expect("a leader");
    run_ok(&["jobs", "rm", "sotu", "--redis", &url]);
    let listing = run_ok(&["jobs", "--redis", &url]);
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("no redcount jobs"),
        "{}",
        String::from_utf8_lossy(&listing.stdout)
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
    let three = "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3";
    let bare = [
        "raft-node",
        "--dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--id",
        "1",
    ];
    assert_refused(
        &[&bare[..], &["--peers", three]].concat(),
        "needs --requirepass-file",
    );
    let pw = dir.path().join("password");
    std::fs::write(&pw, "s3cret").expect("write");
    let pw = pw.to_str().expect("utf-8");
    let node = [
        "raft-node",
        "--dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--requirepass-file",
        pw,
        "--peers",
    ];
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
        "2s",
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

#[test]
fn network_partitions_one_way_links_pauses_and_kills_lose_no_acknowledged_commit() {
    // Jepsen-style, short and seeded: the leader cut off from the majority and healed, a leader
    // whose messages to the followers are lost while theirs reach it, no majority anywhere (the
    // leader cut off and a follower killed), and a paused leader while a follower is cut off.
    let mut g = TestGroup::start_behind_proxies(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 300, 1_000, 8_000, 81);
    let (mut driver, out) = start_job(&g, dir.path(), "net", &corpus, "100ms", &["--no-pack"]);
    let mut rng = Rng::new(23);
    let mut done = Vec::new();
    let term = |g: &TestGroup| -> u64 {
        (1..=3)
            .filter_map(|id| g.status(id)?.get("term")?.parse().ok())
            .max()
            .unwrap_or(0)
    };
    let first_term = term(&g);
    std::thread::sleep(Duration::from_millis(1_000));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    while round < 8 && !finished(&mut driver) && Instant::now() < deadline {
        let Some(leader) = g.leader() else {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        };
        let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
        let hold = Duration::from_millis(rng.range(1_200, 2_500));
        match round % 4 {
            0 => {
                g.links.isolate(leader);
                std::thread::sleep(hold);
            }
            1 => {
                for &f in &followers {
                    g.links.link(leader, f, Fault::DropRequests);
                }
                std::thread::sleep(hold);
            }
            2 => {
                g.links.isolate(leader);
                g.kill(followers[0]);
                std::thread::sleep(hold);
                g.spawn(followers[0], false);
            }
            _ => {
                let pid =
                    nix::unistd::Pid::from_raw(g.nodes.pid(leader).expect("leader pid") as i32);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("stop");
                g.links.isolate(followers[0]);
                std::thread::sleep(hold);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("cont");
            }
        }
        g.links.heal();
        done.push(round % 4);
        round += 1;
        std::thread::sleep(Duration::from_millis(rng.range(800, 1_500)));
    }
    g.links.heal();
    let output = wait_success(driver, Duration::from_secs(150), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&output);
    eprintln!("partition rounds {done:?}: {v}");
    assert!(done.len() >= 4, "the job ended after {} rounds", done.len());
    for ((from, to), proxy) in &g.links.0 {
        assert!(
            proxy.bytes() > 0,
            "nothing went from node {from} to {to} through its proxy"
        );
    }
    let last_term = term(&g);
    assert!(
        last_term >= first_term + 3,
        "the faults forced too few elections: term {first_term} -> {last_term}"
    );
    // A worker cut off with a minority leader may lose its leases (it could not reach the serving
    // majority); what may never happen is an acknowledged commit lost.
    assert_eq!(v["recomputed_after_rollback"], 0, "rolled back: {v}");
    assert_eq!(v["recreated"], 0, "job re-run: {v}");
    g.assert_replicas_identical();
}

#[test]
fn a_worker_that_dies_during_a_failover_still_loses_its_tasks_and_only_it() {
    // Leases pause while the group has no leader, so the failover alone takes nothing from the
    // live worker; the worker killed at the same moment loses its tasks one lease after the new
    // leader serves, and the live worker finishes them.
    let mut g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 120, 1_000, 8_000, 78);
    let out = dir.path().join("dies.tsv");
    let url = g.group.url();
    let driver = redcount()
        .args([
            "run",
            "-w",
            "0",
            "--json",
            "--job",
            "dies",
            "--lease",
            "2s",
            "--no-pack",
        ])
        .args(["--speculate-factor", "0", "--out"])
        .arg(&out)
        .arg(&corpus)
        .env("REDIS_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start driver");
    let worker = |name: &str| {
        redcount()
            .args(["worker", "--job", "dies", "--name", name, "--slow", "40ms"])
            .args(["--batch-tasks", "8"])
            .env("REDIS_URL", &url)
            .stderr(Stdio::null())
            .spawn()
            .expect("start worker")
    };
    let mut workers = ChildGuard(vec![worker("doomed"), worker("survivor")]);
    std::thread::sleep(Duration::from_millis(1_500));
    // Kill the doomed worker only at a moment it holds leases: stop it, look at what the
    // coordinator says it holds, and go on only if that is something (a worker between its
    // commit and its next claim holds nothing, and then there is nothing to take over).
    let mut job = redcount_protocol::Job::new(
        redcount_protocol::Link::open(&url, redcount_protocol::LinkOptions::default())
            .expect("url"),
        "dies",
    )
    .expect("job");
    let doomed = nix::unistd::Pid::from_raw(workers.0[0].id() as i32);
    let mut held = 0;
    for _ in 0..100 {
        nix::sys::signal::kill(doomed, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        held = job
            .workers(redcount_protocol::now_ms())
            .expect("workers")
            .iter()
            .filter(|w| w.name == "doomed")
            .map(|w| w.holds.len())
            .sum();
        if held > 0 {
            break;
        }
        nix::sys::signal::kill(doomed, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(held > 0, "the doomed worker never held a task");
    let leader = g.current_leader();
    g.kill(leader);
    let _ = workers.0[0].kill();
    let _ = workers.0[0].wait();
    std::thread::sleep(Duration::from_millis(1_000));
    g.spawn(leader, false);
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&done);
    eprintln!("worker died during a failover: {v}");
    assert!(
        v["redelivered"].as_u64().expect("redelivered") >= held as u64,
        "the dead worker's {held} tasks were never taken over: {v}"
    );
    let records = job.done_records().expect("done records");
    assert!(
        records
            .iter()
            .filter(|r| r.attempts > 1)
            .all(|r| r.worker == "survivor"),
        "a re-delivered task went elsewhere than to the survivor"
    );
    let redelivered = records.iter().filter(|r| r.attempts > 1).count() as u64;
    assert_eq!(
        Some(redelivered),
        v["redelivered"].as_u64(),
        "only the dead worker's tasks (at most its batch of 8) were re-delivered: {v}"
    );
    assert!(redelivered <= 8, "more than the dead worker's batch: {v}");
    g.assert_replicas_identical();
}

/// What the redis-py test runs against a node: argv host, port, protocol, then the job's nine keys
/// as JSON; the password comes in RC_PASSWORD. Prints what it read as JSON.
const REDIS_PY_PROBE: &str = r#"
import json, os, sys, redis
host, port, proto, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
r = redis.Redis(host=host, port=port, password=os.environ["RC_PASSWORD"], protocol=proto,
                client_name="probe", decode_responses=True, socket_timeout=10)
assert r.ping() is True
assert r.client_getname() == "probe"
assert r.execute_command("SELECT", 0) in (True, "OK")
info = r.info()
tasks, _, counts, meta = keys[0], keys[1], keys[2], keys[3]
events = keys[8]
state = r.hgetall(meta)
assert isinstance(state, dict), type(state)
top = r.fcall_ro("rc_top", len(keys), *keys, 3)
head = r.zrange(counts, 0, 2, desc=True, withscores=True)
n = r.fcall("rc_event", len(keys), *keys, "0", "probe", "from redis-py")
kinds = [fields["kind"] for _, fields in r.xrange(events)]
print(json.dumps({"proto": proto, "role": info["role"], "raft_role": info.get("raft_role"),
                  "state": state["state"], "done": state["done"], "tasks": state["tasks"], "top": top,
                  "head": [[w, s] for w, s in head], "event": n, "kinds": kinds}))
"#;

#[test]
fn redis_py_and_an_interactive_redis_cli_speak_resp2_and_resp3_to_a_node() {
    let Some(python) = test_python() else {
        return;
    };
    let g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 20, 500, 4_000, 81);
    let (driver, out) = start_job(
        &g,
        dir.path(),
        "py",
        &corpus,
        "0ms",
        &["--aggregate-in", "redis"],
    );
    wait_success(driver, Duration::from_secs(120), "driver");
    let oracle = oracle_count(&files);
    assert_same_counts(&oracle, &read_out_file(&out));
    let mut expected: Vec<(&Vec<u8>, &u64)> = oracle.iter().collect();
    expected.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let top3: Vec<(String, u64)> = expected
        .iter()
        .take(3)
        .map(|(w, n)| (String::from_utf8_lossy(w).into_owned(), **n))
        .collect();
    let keys = redcount_protocol::JobKeys::new("py").expect("keys");
    let keys_json = serde_json::to_string(&keys.all()).expect("json");
    let leader = g.current_leader();
    let addr = g.node(leader).addr.clone();
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    for (proto, event) in [(2, 1), (3, 2)] {
        let probe = std::process::Command::new(&python)
            .args([
                "-c",
                REDIS_PY_PROBE,
                host,
                port,
                &proto.to_string(),
                &keys_json,
            ])
            .env("RC_PASSWORD", &g.group.password)
            .output()
            .expect("run python");
        assert!(
            probe.status.success(),
            "redis-py with protocol={proto} failed: {}",
            String::from_utf8_lossy(&probe.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("probe's JSON");
        assert_eq!(v["role"], "master", "{v}");
        assert_eq!(v["raft_role"], "leader", "{v}");
        assert_eq!(v["state"], "sealed", "{v}");
        assert_eq!(v["done"], v["tasks"], "{v}");
        let top: Vec<(String, u64)> = v["top"]
            .as_array()
            .expect("top")
            .chunks(2)
            .map(|p| {
                let n = p[1]
                    .as_str()
                    .expect("count")
                    .parse::<f64>()
                    .expect("number");
                (p[0].as_str().expect("word").to_string(), n as u64)
            })
            .collect();
        let mut top = top;
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        assert_eq!(top, top3, "rc_top over protocol {proto}: {v}");
        let head: Vec<u64> = v["head"]
            .as_array()
            .expect("head")
            .iter()
            .map(|p| p[1].as_f64().expect("a score as a number") as u64)
            .collect();
        let want: Vec<u64> = top3.iter().map(|(_, n)| *n).collect();
        assert_eq!(head, want, "ZRANGE WITHSCORES over protocol {proto}: {v}");
        assert_eq!(v["event"], event, "{v}");
        assert!(
            v["kinds"]
                .as_array()
                .expect("kinds")
                .iter()
                .any(|k| k == "probe"),
            "{v}"
        );
    }

    // redis-cli at its prompt, typed into by tmux, in RESP3 (-3): maps are printed as maps.
    let session = format!("rc-cli-{}", std::process::id());
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux")
    };
    struct Tmux(String);
    impl Drop for Tmux {
        fn drop(&mut self) {
            let _ = std::process::Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .output();
        }
    }
    let started = std::process::Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "120",
            "-s",
            &session,
        ])
        .args(["-e", &format!("REDISCLI_AUTH={}", g.group.password)])
        .args(["redis-cli", "-3", "-h", host, "-p", port])
        .output()
        .expect("tmux new-session");
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let _cleanup = Tmux(session.clone());
    let typed = |line: &str| {
        assert!(tmux(&["send-keys", "-t", &session, "-l", line])
            .status
            .success());
        assert!(tmux(&["send-keys", "-t", &session, "Enter"])
            .status
            .success());
    };
    let screen_until = |what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen =
                String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout)
                    .into_owned();
            if screen.contains(what) || Instant::now() > deadline {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Type only at the prompt: keys sent while redis-cli still starts are lost.
    let prompt = format!("{host}:{port}>");
    let screen = screen_until(&prompt);
    assert!(screen.contains(&prompt), "no redis-cli prompt: {screen}");
    typed("PING");
    let screen = screen_until("PONG");
    assert!(screen.contains("PONG"), "{screen}");
    typed(&format!("HGETALL {}", keys.meta));
    let screen = screen_until("\"state\" => \"sealed\"");
    assert!(
        screen.contains("\"state\" => \"sealed\""),
        "no RESP3 map at the prompt: {screen}"
    );
    typed("HELLO 3");
    let screen = screen_until("\"proto\" => (integer) 3");
    assert!(screen.contains("\"proto\" => (integer) 3"), "{screen}");
    assert!(
        !screen.contains(&g.group.password),
        "the password reached the screen"
    );
}

#[test]
fn forged_peer_frames_and_oversized_frames_before_auth_are_refused() {
    use std::io::{Read, Write};
    let g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 150, 1_000, 8_000, 79);
    let (driver, out) = start_job(&g, dir.path(), "forge", &corpus, "10ms", &[]);
    let leader = g.current_leader();
    let term = |g: &TestGroup, id: u64| -> u64 {
        g.status(id).expect("status")["term"].parse().expect("term")
    };
    let before: Vec<u64> = (1..=3).map(|id| term(&g, id)).collect();
    // What an attacker without the secret can send to a peer port: the old magic with a bincode
    // AppendEntries-sized frame, the current magic with a nonce and then junk where a proof should
    // be, and frames that claim a huge size. Each connection must be dropped without effect.
    let mut forged = vec![0u8; 40];
    forged[..4].copy_from_slice(&36u32.to_le_bytes());
    forged[4..12].copy_from_slice(&1000u64.to_le_bytes());
    for id in (1..=3).filter(|&id| id != leader) {
        let addr = g.node(id).addr.clone();
        for attempt in [
            [&b"\0rcraft1"[..], &forged].concat(),
            [&b"\0rcraft2"[..], &[9u8; 32], &[0u8; 32], &forged].concat(),
            [&b"\0rcraft2"[..], &[9u8; 32], &u32::MAX.to_le_bytes()[..]].concat(),
        ] {
            let mut s = std::net::TcpStream::connect(&addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let _ = s.write_all(&attempt);
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            assert!(
                rest.len() <= 64,
                "node {id} answered a forged peer with {} bytes",
                rest.len()
            );
        }
        // A client that has not authenticated may not announce a large bulk string: refused at
        // once, without waiting for (or allocating) its bytes.
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        s.write_all(b"*2\r\n$4\r\nAUTH\r\n$536870000\r\n")
            .expect("write");
        let mut reply = [0u8; 256];
        let n = s
            .read(&mut reply)
            .expect("an immediate refusal, not a wait for 512 MB");
        let reply = String::from_utf8_lossy(&reply[..n]);
        assert!(
            reply.starts_with("-ERR") && reply.contains("too long"),
            "{reply}"
        );
    }
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    let after: Vec<u64> = (1..=3).map(|id| term(&g, id)).collect();
    assert_eq!(after, before, "a forged frame moved a node's term");
    assert_eq!(g.leader(), Some(leader), "the leader changed");
    g.assert_replicas_identical();
}

#[test]
fn hello_client_setname_and_info_role_answer_as_redis_does() {
    let g = TestGroup::start(3, 2000);
    let leader = g.current_leader();
    let addr = g.node(leader).addr.clone();
    let mut con = redis::Client::open(format!("redis://{addr}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .expect("connect without a password");
    let err = |r: redis::RedisResult<redis::Value>| r.expect_err("refused").to_string();
    let hello = |con: &mut redis::Connection, args: &[&str]| {
        redis::cmd("HELLO").arg(args).query::<redis::Value>(con)
    };
    assert!(err(hello(&mut con, &["2"])).contains("NOAUTH"));
    assert!(err(hello(&mut con, &["2", "AUTH", "default", "wrong"])).contains("WRONGPASS"));
    assert!(err(hello(&mut con, &["4"])).contains("NOPROTO"));
    // HELLO 3 switches a connection to RESP3 (redis-py and go-redis open every connection so).
    let mut resp3 = redis::Client::open(format!("redis://{addr}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .expect("connect");
    let reply =
        hello(&mut resp3, &["3", "AUTH", "default", &g.group.password]).expect("HELLO 3 with AUTH");
    let redis::Value::Map(pairs) = &reply else {
        panic!("HELLO 3 answered with no map: {reply:?}");
    };
    assert!(
        pairs.contains(&(
            redis::Value::BulkString(b"proto".to_vec()),
            redis::Value::Int(3)
        )),
        "{reply:?}"
    );
    // The leader says so in Redis's words. An election under load (these are 2-core machines) may
    // move the leadership between finding the leader and asking it: then ask the new one.
    let mut leader = leader;
    for attempt in 1..=3 {
        let addr = g.node(leader).addr.clone();
        let mut con = redis::Client::open(format!("redis://{addr}"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect");
        let reply = hello(
            &mut con,
            &[
                "2",
                "AUTH",
                "default",
                &g.group.password,
                "SETNAME",
                "probe",
            ],
        )
        .expect("HELLO 2 with AUTH");
        let text = format!("{reply:?}");
        let info: String = redis::cmd("INFO").query(&mut con).expect("info");
        let now_leader = g.current_leader();
        if now_leader != leader && attempt < 3 {
            eprintln!("leadership moved from {leader} to {now_leader} meanwhile: asking again");
            leader = now_leader;
            continue;
        }
        assert!(text.contains("proto") && text.contains("master"), "{text}");
        let name: String = redis::cmd("CLIENT")
            .arg("GETNAME")
            .query(&mut con)
            .expect("getname");
        assert_eq!(name, "probe");
        assert!(info.contains("\r\nrole:master\r\n"), "{info}");
        assert!(info.contains("raft_role:leader"), "{info}");
        let _: Option<String> = redis::cmd("GET")
            .arg("nothing")
            .query(&mut con)
            .expect("a read");
        break;
    }
    // A follower says so in Redis's words.
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let info: String = redis::cmd("INFO")
        .query(&mut g.connect(follower))
        .expect("info");
    assert!(info.contains("\r\nrole:slave\r\n"), "{info}");
}
