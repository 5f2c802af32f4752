//! A local Raft group for `redcount cluster up --raft N`: N `redcount raft-node` processes on free
//! loopback ports, each detached in its own session with its files under `DIR/node-<id>`, described
//! by `DIR/raft-group.json` so that `cluster down` and `cluster status` find them again. Tests use
//! [`NodeSpec::command`] to start and restart the same nodes themselves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::process::{die_with_parent, spawn_detached, stop_all, write_private};

/// A node's id in the group (`--id`, the keys of `--peers`).
pub type NodeId = u64;

/// The file a Raft group is recorded in.
pub const GROUP_FILE: &str = "raft-group.json";

/// One member of a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Its id in `--peers`.
    pub id: NodeId,
    /// `host:port` it serves clients and peers on.
    pub addr: String,
    /// Its directory (log, vote, snapshot, private Redis).
    pub dir: PathBuf,
}

/// A group's members and password, as saved in `DIR/raft-group.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    /// The group's directory.
    pub dir: PathBuf,
    /// What clients and `cluster` commands AUTH with.
    pub password: String,
    /// Every member.
    pub nodes: Vec<NodeSpec>,
}

impl Group {
    /// A new group of `size` nodes on free loopback ports (nothing started yet).
    pub fn plan(dir: &Path, size: usize) -> anyhow::Result<Group> {
        let mut nodes = Vec::with_capacity(size);
        for i in 1..=size as NodeId {
            let port = crate::free_port()?;
            nodes.push(NodeSpec {
                id: i,
                addr: format!("127.0.0.1:{port}"),
                dir: dir.join(format!("node-{i}")),
            });
        }
        Ok(Group {
            dir: dir.to_path_buf(),
            password: crate::random_hex(16),
            nodes,
        })
    }

    /// `redis+raft://:password@host:port,...`: what every `--redis` flag accepts.
    pub fn url(&self) -> String {
        let addrs: Vec<&str> = self.nodes.iter().map(|n| n.addr.as_str()).collect();
        format!("redis+raft://:{}@{}", self.password, addrs.join(","))
    }

    /// `redis://:password@host:port` of one node (for `RAFT.STATUS`, `DEBUG DIGEST`).
    pub fn node_url(&self, node: &NodeSpec) -> String {
        format!("redis://:{}@{}", self.password, node.addr)
    }

    /// `1=host:port,2=host:port,...`.
    pub fn peers_arg(&self) -> String {
        let peers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect();
        peers.join(",")
    }

    fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }

    /// The `redcount raft-node` command line of one node (`exe` is the redcount binary).
    pub fn command(&self, exe: &Path, node: &NodeSpec, init: bool) -> Command {
        let mut cmd = Command::new(exe);
        cmd.arg("raft-node")
            .arg("--id")
            .arg(node.id.to_string())
            .arg("--dir")
            .arg(&node.dir)
            .arg("--listen")
            .arg(&node.addr)
            .arg("--peers")
            .arg(self.peers_arg())
            .arg("--requirepass-file")
            .arg(self.password_file());
        if init {
            cmd.arg("--init");
        }
        cmd
    }

    /// Writes the password and group files (before any node starts).
    pub fn save(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", self.dir.display()))?;
        write_private(&self.password_file(), &self.password)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.password_file().display()))?;
        let json = serde_json::to_string_pretty(self)?;
        write_private(&self.dir.join(GROUP_FILE), &json)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.dir.display()))
    }

    /// Reads `DIR/raft-group.json`.
    pub fn load(dir: &Path) -> anyhow::Result<Group> {
        let path = dir.join(GROUP_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!("{} not readable ({e}): was a Raft group started with `redcount cluster up --raft N --dir {}`?", path.display(), dir.display())
        })?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// True if DIR holds a Raft group (rather than a Sentinel cluster).
    pub fn exists(dir: &Path) -> bool {
        dir.join(GROUP_FILE).is_file()
    }

    /// Pid of a node's process while it runs (from its pid file, checked against /proc).
    pub fn pid(&self, node: &NodeSpec) -> Option<i32> {
        crate::running_pid(&node.dir.join("node.pid"), "raft-node")
    }

    /// `RAFT.STATUS` of one node as fields, or None if it does not answer.
    pub fn status(&self, node: &NodeSpec) -> Option<BTreeMap<String, String>> {
        let client = redis::Client::open(self.node_url(node)).ok()?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        con.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let text: String = redis::cmd("RAFT.STATUS").query(&mut con).ok()?;
        Some(
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect(),
        )
    }

    /// The member with this id.
    pub fn node(&self, id: NodeId) -> anyhow::Result<&NodeSpec> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| anyhow::anyhow!("the group in {} has no node {id}", self.dir.display()))
    }

    /// The node that says it leads, if any answers so.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|n| {
                self.status(n)
                    .is_some_and(|s| s.get("role").map(String::as_str) == Some("leader"))
            })
            .map(|n| n.id)
    }

    /// Starts node `id` as a child of this process (tests, benchmarks), its output appended to
    /// `node-<id>.log` beside its directory (which a test may wipe); it gets SIGKILL when the calling
    /// thread ends.
    pub fn spawn_child(
        &self,
        exe: &Path,
        id: NodeId,
        init: bool,
        extra_args: &[&str],
    ) -> anyhow::Result<std::process::Child> {
        let node = self.node(id)?;
        let mut cmd = self.logged_command(exe, node, init, &node.dir.with_extension("log"))?;
        cmd.args(extra_args);
        die_with_parent(&mut cmd);
        cmd.spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", exe.display()))
    }

    /// [`Group::command`] with no input, its output appended to `log`, and quiet openraft logs
    /// unless RUST_LOG says otherwise.
    fn logged_command(
        &self,
        exe: &Path,
        node: &NodeSpec,
        init: bool,
        log: &Path,
    ) -> anyhow::Result<Command> {
        std::fs::create_dir_all(&node.dir)?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", log.display()))?;
        let mut cmd = self.command(exe, node, init);
        cmd.stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            );
        Ok(cmd)
    }

    /// Waits until some node leads; returns its id.
    pub fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(id) = self.leader() {
                return Ok(id);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "no leader elected within {timeout:?}; see the node logs in {}/node-*/node.log",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Makes every node of the group in DIR run: a new group on free ports, or, for a group already in
/// DIR, the nodes that are not running (all of them after `cluster down`, one after a crash), with
/// their members, ports and data: their logs name those addresses. Nodes run detached (own session,
/// output appended to `node.log`). Returns the group and how many nodes were started.
pub fn group_up(dir: &Path, size: usize, exe: &Path) -> anyhow::Result<(Group, usize)> {
    if size == 0 || size.is_multiple_of(2) {
        anyhow::bail!(
            "a Raft group needs an odd number of nodes (2f+1 survives f failures), not {size}"
        );
    }
    let group = if Group::exists(dir) {
        let old = Group::load(dir)?;
        if old.nodes.len() != size {
            anyhow::bail!(
                "{} holds a group of {} nodes, not {size}; use --raft {}, or remove the directory \
                 to make a new group",
                dir.display(),
                old.nodes.len(),
                old.nodes.len()
            );
        }
        old
    } else {
        let group = Group::plan(dir, size)?;
        group.save()?;
        group
    };
    let mut started = 0;
    for node in &group.nodes {
        if group.pid(node).is_none() {
            start_detached(&group, node, exe)?;
            started += 1;
        }
    }
    group.wait_for_leader(Duration::from_secs(20))?;
    Ok((group, started))
}

fn start_detached(group: &Group, node: &NodeSpec, exe: &Path) -> anyhow::Result<()> {
    let mut cmd = group.logged_command(exe, node, true, &node.dir.join("node.log"))?;
    spawn_detached(&mut cmd, &node.dir.join("node.pid"))
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", exe.display()))?;
    Ok(())
}

/// Stops every node of the group in DIR (SIGTERM, then SIGKILL after 5 s).
pub fn group_down(dir: &Path) -> anyhow::Result<Group> {
    let group = Group::load(dir)?;
    let pids: Vec<i32> = group.nodes.iter().filter_map(|n| group.pid(n)).collect();
    stop_all(&pids, Duration::from_secs(5));
    Ok(group)
}

/// A group whose nodes are children of this process (tests, benchmarks), each started with
/// [`Group::spawn_child`] and killed when the group is dropped, even by a panic.
pub struct ChildGroup {
    /// The members and password.
    pub group: Group,
    exe: PathBuf,
    /// More `raft-node` flags for every node (`--snapshot-every N` ...).
    extra_args: Vec<String>,
    /// More flags for one node (`--dial ...` through the network tests' proxies).
    pub node_args: BTreeMap<NodeId, Vec<String>>,
    children: BTreeMap<NodeId, Child>,
}

impl ChildGroup {
    /// Plans a group of `size` nodes in `dir`, starts them all from `exe` and waits for a leader.
    pub fn start(
        dir: &Path,
        size: usize,
        exe: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<ChildGroup> {
        let mut children = ChildGroup::plan(dir, size, exe, extra_args)?;
        children.start_all()?;
        Ok(children)
    }

    /// Plans a group of `size` nodes in `dir` without starting any (set `node_args` first).
    pub fn plan(
        dir: &Path,
        size: usize,
        exe: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<ChildGroup> {
        let group = Group::plan(dir, size)?;
        group.save()?;
        Ok(ChildGroup {
            group,
            exe: exe.to_path_buf(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            node_args: BTreeMap::new(),
            children: BTreeMap::new(),
        })
    }

    /// Starts every planned node, forming the group, and waits for a leader.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        let ids: Vec<NodeId> = self.group.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            self.spawn(id, true)?;
        }
        self.group
            .wait_for_leader(Duration::from_secs(20))
            .map(|_| ())
    }

    /// Starts node `id` (again).
    pub fn spawn(&mut self, id: NodeId, init: bool) -> anyhow::Result<()> {
        let extra: Vec<&str> = self
            .extra_args
            .iter()
            .chain(self.node_args.get(&id).into_iter().flatten())
            .map(String::as_str)
            .collect();
        let child = self.group.spawn_child(&self.exe, id, init, &extra)?;
        self.children.insert(id, child);
        Ok(())
    }

    /// The pid of node `id` while this group started it and has not killed it.
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        self.children.get(&id).map(Child::id)
    }

    /// SIGKILL: the node's Redis dies with it; only its log and snapshot remain.
    pub fn kill(&mut self, id: NodeId) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        let ids: Vec<NodeId> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}
