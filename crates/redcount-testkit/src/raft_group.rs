//! A Raft group of `redcount raft-node` children whose nodes reach each other only through fault
//! proxies: the harness of the Raft partition tests and of the lab's partition experiment.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redcount_server::raft_group::ChildGroup;

use crate::{Fault, FaultProxy};

/// The fault proxies between the nodes of a group: the link from node i to node j, by (i, j).
#[derive(Default)]
pub struct Links(pub BTreeMap<(u64, u64), FaultProxy>);

impl Links {
    /// Sets the link from `from` to `to`.
    pub fn link(&self, from: u64, to: u64, fault: Fault) {
        if let Some(proxy) = self.0.get(&(from, to)) {
            proxy.set(fault);
        }
    }

    /// Sets every link from or to node `id`.
    pub fn around(&self, id: u64, fault: Fault) {
        for (&(a, b), proxy) in &self.0 {
            if a == id || b == id {
                proxy.set(fault);
            }
        }
    }

    /// Cuts node `id` off from every other node, both ways.
    pub fn isolate(&self, id: u64) {
        self.around(id, Fault::Cut);
    }

    /// Sets every link.
    pub fn all(&self, fault: Fault) {
        for proxy in self.0.values() {
            proxy.set(fault);
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        self.all(Fault::Pass);
    }
}

/// A Raft group whose nodes reach each other only through fault proxies.
pub struct ProxiedGroup {
    /// The nodes (children of this process, killed when dropped).
    pub nodes: ChildGroup,
    /// The links between them.
    pub links: Links,
}

impl ProxiedGroup {
    /// Plans `size` nodes in `dir`, puts a proxy on every directed link (node i dials node j
    /// through `links[(i, j)]`, with `raft-node --dial`), starts them and waits for a leader.
    pub fn start(dir: &Path, size: usize, exe: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let mut nodes = ChildGroup::plan(dir, size, exe, extra)?;
        let mut links = BTreeMap::new();
        let members = nodes.group.nodes.clone();
        for from in &members {
            let mut dial = Vec::new();
            for to in members.iter().filter(|n| n.id != from.id) {
                let proxy = FaultProxy::start(&to.addr)
                    .with_context(|| format!("a proxy in front of node {}", to.id))?;
                dial.push(format!("{}={}", to.id, proxy.addr()));
                links.insert((from.id, to.id), proxy);
            }
            nodes
                .node_args
                .insert(from.id, vec!["--dial".into(), dial.join(",")]);
        }
        nodes.start_all()?;
        Ok(ProxiedGroup {
            nodes,
            links: Links(links),
        })
    }

    /// Waits until every node applied the same index; returns their `DEBUG DIGEST`s.
    pub fn converged_digests(&self, patience: Duration) -> anyhow::Result<Vec<String>> {
        let group = &self.nodes.group;
        let deadline = Instant::now() + patience;
        loop {
            let applied: Vec<Option<String>> = group
                .nodes
                .iter()
                .map(|n| group.status(n)?.get("applied_index").cloned())
                .collect();
            if applied[0].is_some() && applied.iter().all(|a| *a == applied[0]) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the replicas did not converge: applied {applied:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        group
            .nodes
            .iter()
            .map(|n| {
                let mut con = redis::Client::open(group.node_url(n))?
                    .get_connection_with_timeout(Duration::from_secs(2))?;
                Ok(redis::cmd("DEBUG")
                    .arg("DIGEST")
                    .query::<String>(&mut con)?)
            })
            .collect()
    }
}
