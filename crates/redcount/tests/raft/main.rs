//! The Raft-replicated coordinator: a group of `redcount raft-node` processes that this test starts
//! on loopback, killed and restarted (leader included), partly stopped, wiped and partitioned while a
//! job runs. Every run must equal the independent count, recompute nothing, and leave every
//! replica's Redis with the same data (DEBUG DIGEST).

mod clients;
mod command_line;
#[path = "../common/mod.rs"]
mod common;
mod failover;
mod partitions;
mod stream;

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
/// (library/leases.lua, lease_clock), so no failover alone may take a task from a live worker.
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
