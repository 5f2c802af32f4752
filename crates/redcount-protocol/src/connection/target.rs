//! Where a [`crate::Link`] connects: one Redis (`redis://`), or whichever server the Redis Sentinels
//! currently name as the primary (`redis+sentinel://[:password@]host:port[,host:port...]/name`). The
//! primary is looked up again on every new connection, and a server that answers `ROLE` with anything
//! but `master` (a demoted primary) is refused, so writes follow failovers. A Raft group
//! (`redis+raft://[:password@]host:port,host:port,...`) is searched the same way: each node answers
//! `ROLE` with `master` only while it leads, or names the leader. A Redis Cluster
//! (`redis+cluster://[:password@]host:port,host:port,...`, any of its nodes) goes through redis-rs's
//! cluster client, which routes each command to the shard holding its keys.

use std::sync::Mutex;
use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::{Client, Connection, RedisError, RedisResult};

use crate::connection::con::Con;

pub(crate) enum Target {
    Direct(Client),
    Sentinel {
        /// `host:port` of each Sentinel.
        sentinels: Vec<String>,
        /// The monitored primary's name.
        master: String,
        /// `user:password@`, `:password@` or empty: credentials of the data nodes.
        auth: String,
    },
    Raft {
        /// `host:port` of each node.
        nodes: Vec<String>,
        /// `:password@` or empty.
        auth: String,
        /// The node that led last time (or that a node named as leader): tried first.
        leader_hint: Mutex<Option<String>>,
    },
    /// A Redis Cluster: the client learns the slot map from whichever listed node answers.
    Cluster(ClusterClient),
}

impl Target {
    pub(crate) fn parse(url: &str) -> RedisResult<Target> {
        if let Some(rest) = url.strip_prefix("redis+raft://") {
            return parse_raft(url, rest);
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            return parse_cluster(url, rest);
        }
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            return Ok(Target::Direct(Client::open(url)?));
        };
        let (auth, rest) = match rest.rfind('@') {
            Some(at) => (rest[..=at].to_string(), &rest[at + 1..]),
            None => (String::new(), rest),
        };
        let (hosts, master) = rest.split_once('/').unwrap_or((rest, "redcount"));
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if sentinels.is_empty() || master.is_empty() {
            return Err(unreachable_error(format!(
                "'{}' names no Sentinel or no primary: use redis+sentinel://[:password@]host:port[,host:port]/name",
                crate::redact_url(url)
            )));
        }
        Ok(Target::Sentinel {
            sentinels,
            master: master.to_string(),
            auth,
        })
    }

    /// A connection to the server this target names now, with that server's `host:port` when a
    /// Sentinel named it (so the link can notice when the Sentinels name another).
    pub(crate) fn connect(&self, timeout: Duration) -> RedisResult<(Con, Option<String>)> {
        match self {
            Target::Direct(client) => {
                Ok((Con::One(client.get_connection_with_timeout(timeout)?), None))
            }
            Target::Cluster(client) => Ok((Con::Cluster(Box::new(client.get_connection()?)), None)),
            Target::Sentinel {
                sentinels,
                master,
                auth,
            } => {
                let mut last = None;
                for sentinel in sentinels {
                    match primary_via(sentinel, master, auth, timeout) {
                        Ok((con, addr)) => return Ok((Con::One(con), Some(addr))),
                        Err(err) => last = Some(err),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    unreachable_error(format!("no Sentinel knows a primary '{master}'"))
                }))
            }
            Target::Raft {
                nodes,
                auth,
                leader_hint,
            } => Ok((
                Con::One(raft_leader(nodes, auth, leader_hint, timeout)?),
                None,
            )),
        }
    }

    /// The primary the first Sentinel that answers within `timeout` names now (`host:port`); None
    /// for other targets, or when no Sentinel answers (a client cut off from them keeps its server).
    pub(crate) fn named_primary(&self, timeout: Duration) -> Option<String> {
        let Target::Sentinel {
            sentinels,
            master,
            auth,
        } = self
        else {
            return None;
        };
        sentinels.iter().find_map(|sentinel| {
            let mut s = sentinel_connection(sentinel, auth, timeout).ok()?;
            s.set_read_timeout(Some(timeout)).ok()?;
            named_by(&mut s, master).ok()?
        })
    }

    /// One Redis server (not a Sentinel set or a Raft group, which have failovers to wait out).
    pub(crate) fn is_single(&self) -> bool {
        matches!(self, Target::Direct(_))
    }

    /// A node answered `-MOVED 0 host:port`: try that one first next time.
    pub(crate) fn redirected(&self, addr: &str) {
        if let Target::Raft { leader_hint, .. } = self {
            if let Ok(mut hint) = leader_hint.lock() {
                *hint = Some(addr.to_string());
            }
        }
    }
}

/// `[auth@]host:port,host:port[/]` -> (`auth@` or empty, the `host:port`s), or an error naming
/// the URL's form (`scheme`) when it lists no node.
fn auth_and_nodes(url: &str, rest: &str, scheme: &str) -> RedisResult<(String, Vec<String>)> {
    let (auth, rest) = match rest.rfind('@') {
        Some(at) => (rest[..=at].to_string(), &rest[at + 1..]),
        None => (String::new(), rest),
    };
    let nodes: Vec<String> = rest
        .trim_end_matches('/')
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    if nodes.is_empty() {
        return Err(unreachable_error(format!(
            "'{}' names no node: use {scheme}://[:password@]host:port[,host:port...]",
            crate::redact_url(url)
        )));
    }
    Ok((auth, nodes))
}

fn parse_raft(url: &str, rest: &str) -> RedisResult<Target> {
    let (auth, nodes) = auth_and_nodes(url, rest, "redis+raft")?;
    Ok(Target::Raft {
        nodes,
        auth,
        leader_hint: Mutex::new(None),
    })
}

/// How many times the cluster client itself retries a command (after a `MOVED` it refreshes its
/// slot map and follows; after an error it reconnects): few, since the link retries everything
/// transient for up to a minute with its own backoff, and a failover takes seconds.
const CLUSTER_RETRIES: u32 = 3;

fn parse_cluster(url: &str, rest: &str) -> RedisResult<Target> {
    let (auth, nodes) = auth_and_nodes(url, rest, "redis+cluster")?;
    let node_urls: Vec<String> = nodes.iter().map(|n| format!("redis://{auth}{n}")).collect();
    let client = ClusterClient::builder(node_urls)
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(10))
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(50)
        .max_retry_wait(250)
        .build()?;
    Ok(Target::Cluster(client))
}

/// Connects to the group's leader: the hinted node first, then every node, following the leader a
/// follower names. Fails (as unreachable, so the link waits and retries) while there is none.
fn raft_leader(
    nodes: &[String],
    auth: &str,
    leader_hint: &Mutex<Option<String>>,
    timeout: Duration,
) -> RedisResult<Connection> {
    let hint = leader_hint.lock().ok().and_then(|h| h.clone());
    let mut queue: Vec<String> = hint.into_iter().chain(nodes.iter().cloned()).collect();
    let mut tried: Vec<String> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    while let Some(addr) = (!queue.is_empty()).then(|| queue.remove(0)) {
        if tried.contains(&addr) {
            continue;
        }
        tried.push(addr.clone());
        let attempt = Client::open(format!("redis://{auth}{addr}"))
            .and_then(|c| c.get_connection_with_timeout(timeout))
            .and_then(|mut con| {
                let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut con)?;
                Ok((con, role))
            });
        match attempt {
            Ok((con, role)) => match role.as_slice() {
                [redis::Value::BulkString(r), ..] if r == b"master" => {
                    if let Ok(mut h) = leader_hint.lock() {
                        *h = Some(addr);
                    }
                    return Ok(con);
                }
                [redis::Value::BulkString(_), redis::Value::BulkString(host), redis::Value::Int(port), ..] =>
                {
                    let leader = format!("{}:{port}", String::from_utf8_lossy(host));
                    reasons.push(format!("{addr} follows {leader}"));
                    queue.insert(0, leader);
                }
                _ => reasons.push(format!("{addr} answered ROLE with {role:?}")),
            },
            Err(err) => reasons.push(format!("{addr}: {err}")),
        }
    }
    Err(unreachable_error(format!(
        "no Raft leader reachable ({})",
        reasons.join("; ")
    )))
}

/// `MOVED 0 host:port` -> `host:port`.
pub(crate) fn moved_to(err: &RedisError) -> Option<String> {
    if !matches!(
        err.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::Moved)
    ) {
        return None;
    }
    err.redirect_node().map(|(addr, _)| addr.to_string())
}

/// Asks one Sentinel for the primary, connects to it and checks that it is one.
/// A connection to one Sentinel. The Sentinels of `cluster up` take the cluster's password too;
/// others may have none.
fn sentinel_connection(sentinel: &str, auth: &str, timeout: Duration) -> RedisResult<Connection> {
    match Client::open(format!("redis://{auth}{sentinel}"))?.get_connection_with_timeout(timeout) {
        Err(e) if !auth.is_empty() && e.to_string().contains("without any password configured") => {
            Client::open(format!("redis://{sentinel}"))?.get_connection_with_timeout(timeout)
        }
        other => other,
    }
}

fn primary_via(
    sentinel: &str,
    master: &str,
    auth: &str,
    timeout: Duration,
) -> RedisResult<(Connection, String)> {
    let mut s = sentinel_connection(sentinel, auth, timeout)?;
    let Some(addr) = named_by(&mut s, master)? else {
        return Err(unreachable_error(format!(
            "Sentinel {sentinel} knows no primary '{master}'"
        )));
    };
    let mut con =
        Client::open(format!("redis://{auth}{addr}"))?.get_connection_with_timeout(timeout)?;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut con)?;
    let is_primary = matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master");
    if !is_primary {
        return Err(unreachable_error(format!(
            "{addr} is no longer the primary (Sentinel {sentinel} has not caught up yet)"
        )));
    }
    Ok((con, addr))
}

/// The primary `master` as the Sentinel on `s` names it now (`host:port`), if it knows one.
fn named_by(s: &mut Connection, master: &str) -> RedisResult<Option<String>> {
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query(s)?;
    Ok(addr.map(|(host, port)| format!("{host}:{port}")))
}

/// An error the link treats like an unreachable server: it waits and tries again.
fn unreachable_error(message: String) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        message,
    ))
}
