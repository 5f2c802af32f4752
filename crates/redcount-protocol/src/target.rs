//! Where a [`crate::Link`] connects: one Redis (`redis://`), or whichever server the Redis Sentinels
//! currently name as the primary (`redis+sentinel://[:password@]host:port[,host:port...]/name`). The
//! primary is looked up again on every new connection, and a server that answers `ROLE` with anything
//! but `master` (a demoted primary) is refused, so writes follow failovers.

use std::time::Duration;

use redis::{Client, Connection, RedisError, RedisResult};

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
}

impl Target {
    pub(crate) fn parse(url: &str) -> RedisResult<Target> {
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

    pub(crate) fn connect(&self, timeout: Duration) -> RedisResult<Connection> {
        match self {
            Target::Direct(client) => client.get_connection_with_timeout(timeout),
            Target::Sentinel {
                sentinels,
                master,
                auth,
            } => {
                let mut last = None;
                for sentinel in sentinels {
                    match primary_via(sentinel, master, auth, timeout) {
                        Ok(con) => return Ok(con),
                        Err(err) => last = Some(err),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    unreachable_error(format!("no Sentinel knows a primary '{master}'"))
                }))
            }
        }
    }
}

/// Asks one Sentinel for the primary, connects to it and checks that it is one.
fn primary_via(
    sentinel: &str,
    master: &str,
    auth: &str,
    timeout: Duration,
) -> RedisResult<Connection> {
    let mut s =
        Client::open(format!("redis://{sentinel}"))?.get_connection_with_timeout(timeout)?;
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query(&mut s)?;
    let Some((host, port)) = addr else {
        return Err(unreachable_error(format!(
            "Sentinel {sentinel} knows no primary '{master}'"
        )));
    };
    let mut con = Client::open(format!("redis://{auth}{host}:{port}"))?
        .get_connection_with_timeout(timeout)?;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut con)?;
    let is_primary = matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master");
    if !is_primary {
        return Err(unreachable_error(format!(
            "{host}:{port} is no longer the primary (Sentinel {sentinel} has not caught up yet)"
        )));
    }
    Ok(con)
}

/// An error the link treats like an unreachable server: it waits and tries again.
fn unreachable_error(message: String) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        message,
    ))
}
