//! One live connection as a [`crate::Link`] holds it: to a single server (plain Redis, a Sentinel's
//! primary, a Raft leader), or to a Redis Cluster through redis-rs's cluster client, which routes
//! every command by its keys and follows `MOVED`/`ASK` itself. A job's keys share one hash tag, so
//! every call about a job lands on the shard that holds it; the few keyless commands a job needs
//! (`INFO`, `WAIT`, `CONFIG GET`) are sent with [`Con::query_at`] to the primary of a key's slot,
//! and the few that concern every shard (listing jobs, loading the library) go to each primary.

use std::time::Duration;

use redis::cluster::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr,
};
use redis::{Cmd, Connection, ConnectionLike, FromRedisValue, RedisResult, Value};

/// A connection to one server or to a Redis Cluster.
pub enum Con {
    /// One server.
    One(Connection),
    /// Every primary of a Redis Cluster (connections made as commands need them).
    Cluster(Box<ClusterConnection>),
}

/// A primary of a cluster, by address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// Host name or IP, as the cluster announces it.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Con {
    /// Sets the read and write timeout of every underlying socket.
    pub(crate) fn set_timeouts(&mut self, timeout: Option<Duration>) -> RedisResult<()> {
        match self {
            Con::One(c) => {
                c.set_read_timeout(timeout)?;
                c.set_write_timeout(timeout)
            }
            Con::Cluster(c) => {
                c.set_read_timeout(timeout)?;
                c.set_write_timeout(timeout)
            }
        }
    }

    /// True for a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Con::Cluster(_))
    }

    /// Runs a keyless command (`INFO`, `WAIT`, `CONFIG GET`) on the server that holds `key`: in a
    /// cluster, the primary of the key's slot (so `INFO` tells about the shard of a job, and `WAIT`
    /// waits for that shard's replicas).
    pub fn query_at<T: FromRedisValue>(&mut self, key: &str, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Con::One(c) => cmd.query(c),
            Con::Cluster(c) => {
                let route = Route::with_slot(Slot::for_key(key.as_bytes()), SlotAddr::Master);
                let value = c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )?;
                Ok(T::from_redis_value(value)?)
            }
        }
    }

    /// Runs `cmd` on one primary of a cluster, by address (on a single server: on it).
    pub fn query_on<T: FromRedisValue>(&mut self, node: &NodeAddr, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Con::One(c) => cmd.query(c),
            Con::Cluster(c) => {
                let value = c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: node.host.clone(),
                        port: node.port,
                    }),
                )?;
                Ok(T::from_redis_value(value)?)
            }
        }
    }

    /// Sends `cmds` (about one job, whose keys all hash to the slot of `key`) and returns their
    /// replies in order: in one pipeline on a single server; on a cluster one at a time, each to the
    /// primary of that slot (the cluster client's own pipelines refuse some of the commands a job
    /// sends, `MGET`, and would send a keyless `INFO` to every primary).
    pub fn pipeline(&mut self, key: &str, cmds: &[Cmd]) -> RedisResult<Vec<Value>> {
        match self {
            Con::One(c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd.clone());
                }
                // A failed command fails the pipeline with its own error, as it would alone (a
                // pipeline's error hides codes such as NOJOB and BUSY that callers act on).
                let replies: Vec<Value> = pipe.ignore_errors().query(c)?;
                match replies.iter().find_map(|v| match v {
                    Value::ServerError(e) => Some(e.clone()),
                    _ => None,
                }) {
                    Some(err) => Err(err.into()),
                    None => Ok(replies),
                }
            }
            Con::Cluster(_) => cmds.iter().map(|cmd| self.query_at(key, cmd)).collect(),
        }
    }

    /// Every primary of a cluster as the cluster client's slot map has them, in address order;
    /// None for a single server.
    pub fn primaries(&mut self) -> RedisResult<Option<Vec<NodeAddr>>> {
        let Con::Cluster(c) = self else {
            return Ok(None);
        };
        // A keyless PING to every primary answers with a map of address -> reply.
        let reply = c.route_command(
            &redis::cmd("PING"),
            RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
        )?;
        let Value::Map(pairs) = reply else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "a cluster answered PING to every primary with something else than a map",
                format!("{reply:?}"),
            )));
        };
        let mut nodes: Vec<NodeAddr> = pairs
            .into_iter()
            .filter_map(|(addr, _)| {
                let addr = String::from_redis_value(addr).ok()?;
                let (host, port) = addr.rsplit_once(':')?;
                Some(NodeAddr {
                    host: host.to_string(),
                    port: port.parse().ok()?,
                })
            })
            .collect();
        nodes.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        Ok(Some(nodes))
    }

    /// Every key matching `pattern` (`SCAN MATCH`, a read every coordinator serves): on a
    /// cluster, on each primary in turn (each holds its own slots).
    pub fn scan_match(&mut self, pattern: &str) -> RedisResult<Vec<String>> {
        let scan = |cursor: u64| {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .clone()
        };
        // Each page is its own call carrying the cursor the last one returned (redis-rs's
        // `Cmd::iter` would resend cursor 0 forever unless told which argument is the cursor),
        // so no call walks more than COUNT keys and Redis is never blocked by a listing.
        let mut keys = Vec::new();
        let nodes = self.primaries()?;
        let targets: Vec<Option<NodeAddr>> = match nodes {
            Some(nodes) => nodes.into_iter().map(Some).collect(),
            None => vec![None],
        };
        for node in targets {
            let mut cursor = 0u64;
            loop {
                let (next, page): (u64, Vec<String>) = match &node {
                    Some(node) => self.query_on(node, &scan(cursor))?,
                    None => scan(cursor).query(self)?,
                };
                keys.extend(page);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }
}

impl ConnectionLike for Con {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Con::One(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Con::One(c) => c.req_packed_commands(cmd, offset, count),
            Con::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    // The cluster client routes a command by its parsed arguments: pass the command, not its bytes.
    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Con::One(c) => c.req_command(cmd),
            Con::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::One(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            Con::One(c) => c.supports_pipelining(),
            Con::Cluster(c) => c.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Con::One(c) => c.check_connection(),
            Con::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Con::One(c) => c.is_open(),
            Con::Cluster(c) => c.is_open(),
        }
    }
}
