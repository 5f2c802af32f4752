//! What every connection of one node shares: the openraft handle, the state machine, the fault
//! switch and the password, the leader's clock for new entries, and how the node describes its state
//! (`ROLE`, `INFO`, `RAFT.STATUS`, redirects to the leader).

use std::sync::atomic::{AtomicU64, Ordering};

use openraft::{BasicNode, ServerState};

use crate::frame::Frame;
use crate::network::Isolation;
use crate::redis_machine::RedisMachine;
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Raft};

/// What sessions share.
pub struct Node {
    /// This node's id.
    pub id: NodeId,
    /// The openraft handle.
    pub raft: Raft,
    /// The state machine: the node's private Redis.
    pub sm: StateMachine<RedisMachine>,
    /// The fault switch (`RAFT.ISOLATE`).
    pub isolation: Isolation,
    /// What clients must AUTH with, if anything.
    pub password: Option<String>,
    /// The read barrier every read of this node shares.
    pub reads: std::sync::Arc<crate::read_barrier::ReadBarrier>,
    pub(crate) group_id: String,
    pub(crate) election_min_ms: u64,
    pub(crate) last_now: AtomicU64,
}

impl Node {
    /// The leader's clock for a new entry, never going backwards on this leader.
    pub fn stamp_now(&self) -> u64 {
        let now = redcount_protocol::now_ms();
        let prev = self.last_now.fetch_max(now, Ordering::SeqCst);
        now.max(prev)
    }

    fn metrics(&self) -> openraft::RaftMetrics<NodeId, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// Ok if this node leads and heard from a quorum within the shortest election timeout (no other
    /// leader can have been elected since). Cheap: no round trip.
    pub fn leader_lease(&self) -> Result<(), Frame> {
        let m = self.metrics();
        let fresh = m
            .millis_since_quorum_ack
            .is_some_and(|ms| ms < self.election_min_ms);
        if m.state == ServerState::Leader && fresh {
            return Ok(());
        }
        let leader = m.current_leader.filter(|l| *l != self.id);
        let node = leader.and_then(|l| m.membership_config.membership().get_node(&l).cloned());
        Err(redirect(leader, node.as_ref()))
    }

    /// `ROLE`, as clients use it to find the leader: `master` only for a leader with a fresh lease.
    pub fn role(&self) -> Frame {
        let applied = Frame::Integer(self.sm.applied_index() as i64);
        match self.leader_lease() {
            Ok(()) => Frame::Array(vec![Frame::bulk("master"), applied, Frame::Array(vec![])]),
            Err(Frame::Error(e)) if e.starts_with("MOVED") => {
                let addr = e.rsplit(' ').next().unwrap_or_default().to_string();
                let (host, port) = addr.rsplit_once(':').unwrap_or((&addr, "0"));
                Frame::Array(vec![
                    Frame::bulk("slave"),
                    Frame::bulk(host),
                    Frame::Integer(port.parse().unwrap_or(0)),
                    Frame::bulk("connected"),
                    applied,
                ])
            }
            Err(other) => other,
        }
    }

    pub fn voters(&self) -> usize {
        self.metrics()
            .membership_config
            .membership()
            .voter_ids()
            .count()
    }

    /// `RAFT.STATUS`: `field:value` lines.
    pub fn status_text(&self) -> String {
        let m = self.metrics();
        let leader = m
            .current_leader
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into());
        format!(
            "id:{}\r\nrole:{}\r\nterm:{}\r\nleader:{}\r\napplied_index:{}\r\nlast_log_index:{}\r\n\
             snapshot_index:{}\r\nisolated:{}\r\n",
            self.id,
            state_name(m.state),
            m.current_term,
            leader,
            self.sm.applied_index(),
            m.last_log_index
                .map(|i| i.to_string())
                .unwrap_or_else(|| "none".into()),
            m.snapshot
                .map(|s| s.index.to_string())
                .unwrap_or_else(|| "none".into()),
            u8::from(self.isolation.is_on()),
        )
    }

    /// `INFO`: a Redis-like server section whose run_id is the group's (the same on every node, so
    /// clients do not mistake a failover for a restart that lost data), the role in Redis's words
    /// (`master` for the leader, else `slave`), then the Raft state (its role as `raft_role`).
    pub fn info(&self) -> String {
        format!(
            "# Server\r\nredis_version:7.0.0-redcount-raft\r\nrun_id:{}\r\nredcount_raft_node:{}\r\n\r\n\
             # Replication\r\nrole:{}\r\n\r\n# Raft\r\n{}",
            self.group_id,
            self.id,
            self.redis_role(),
            self.status_text().replace("\r\nrole:", "\r\nraft_role:")
        )
    }

    /// `master` while this node leads with a fresh lease, else `slave` (Redis's words).
    pub fn redis_role(&self) -> &'static str {
        if self.leader_lease().is_ok() {
            "master"
        } else {
            "slave"
        }
    }
}

/// `-MOVED 0 host:port` naming the leader, or TRYAGAIN while there is none.
pub fn redirect(leader: Option<NodeId>, node: Option<&BasicNode>) -> Frame {
    match (leader, node) {
        (Some(_), Some(n)) => Frame::error(format!("MOVED 0 {}", n.addr)),
        _ => Frame::error("TRYAGAIN raft: no leader elected yet; retry shortly"),
    }
}

/// A short name for a server state, as `RAFT.STATUS` and `cluster status` show it.
pub fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}
