//! A connection to Redis that survives Redis going away: reconnects with bounded exponential backoff
//! and jitter, retries `LOADING` and `BUSY` (Redis running a long script: "later", never "give up"),
//! and re-loads the Functions library on every new connection. Every
//! protocol call is safe to repeat after a lost reply (idempotent enqueue, exactly-once commit).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use redis::{ErrorKind, RedisError, RedisResult, ServerErrorKind};

use crate::connection::con::Con;

use crate::connection::target::Target;
use crate::library::{ensure_library_everywhere, is_missing_library};
use crate::{Error, Result};

/// Set once the user asked the process to stop (Ctrl-C): calls waiting for Redis give up at once.
static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(Arc::default);

/// The process's stop flag, for a signal handler to set (and a driver to watch).
pub fn stop_flag() -> Arc<AtomicBool> {
    STOP.clone()
}

/// Makes every link of this process stop retrying.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// True once [`request_stop`] was called.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// How long a link keeps trying a single Redis it has never reached: a wrong URL or port should
/// say so within seconds, in one line (the minute of patience is for a Redis that was there and
/// went away); long enough for a Redis that is still starting, or restarting from its files.
const FIRST_CONTACT: Duration = Duration::from_millis(2500);

/// How patient a [`Link`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOptions {
    /// Give up on an unreachable Redis after this long (per call).
    pub give_up_after: Duration,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// Timeout of one reply. A connection that went silent without a reset (a partition, a
    /// black-holed link, a reply lost on the way) would otherwise block its caller forever: after
    /// this long the call is sent again on a new connection, which every protocol call allows (a
    /// claim is recognised by its token, a commit applies once). Longer than any call takes (the
    /// blocking reads wait at most 500 ms; Redis answers BUSY after its busy-reply-threshold).
    pub read_timeout: Option<Duration>,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            give_up_after: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Some(Duration::from_secs(10)),
        }
    }
}

/// One reconnecting connection to one Redis URL (or to the primary its Sentinels name, a Raft
/// group's leader, or the shards of a Redis Cluster).
pub struct Link {
    target: Target,
    con: Option<Con>,
    addr: String,
    options: LinkOptions,
    /// Connections made so far: a change between two calls means they went to different servers
    /// (or the same one after a reconnect).
    connections: u64,
    /// A first contact already failed for [`FIRST_CONTACT`]: later calls fail after one attempt.
    never_reached: bool,
    /// The server a Sentinel named for the current connection, and when the Sentinels were last
    /// asked whether they still name it (see [`Link::follow_sentinels`]).
    sentinel_named: Option<(String, Instant)>,
}

impl Link {
    /// Parses `url` (`redis://[:password@]host:port[/db]`, `rediss://...` for TLS (the server's
    /// certificate is checked against the system's roots, or the PEM file in `SSL_CERT_FILE`),
    /// `redis+sentinel://[:password@]host:port[,host:port...]/name`,
    /// `redis+raft://[:password@]host:port[,host:port...]` or
    /// `redis+cluster://[:password@]host:port[,host:port...]`); does not connect yet.
    pub fn open(url: &str, options: LinkOptions) -> Result<Link> {
        use_ring_for_tls();
        let url = &normalize_url(url)?;
        let addr = redact_url(url);
        let target = Target::parse(url).map_err(|cause| Error::Redis {
            addr: addr.clone(),
            cause,
        })?;
        Ok(Link {
            target,
            con: None,
            addr,
            options,
            connections: 0,
            never_reached: false,
            sentinel_named: None,
        })
    }

    /// True when this link leads to a Raft group of `redcount raft-node`s (`redis+raft://`), whose
    /// durability is the group's, not a Redis server's settings.
    pub fn is_raft_group(&self) -> bool {
        matches!(self.target, Target::Raft { .. })
    }

    /// True when this link leads to a Redis Cluster (`redis+cluster://`): a job lives on one shard.
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// Runs a keyless command (`INFO`, `WAIT`, `CONFIG GET`, `BGSAVE`) on the server that holds
    /// `key` (in a cluster, the primary of its slot), with the link's retries.
    pub fn query_at<T: redis::FromRedisValue>(
        &mut self,
        what: &str,
        key: &str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        self.call(what, |con| con.query_at(key, cmd))
    }

    /// Every key matching `pattern`, on every primary of a cluster (`SCAN MATCH`).
    pub fn scan(&mut self, pattern: &str) -> Result<Vec<String>> {
        self.call("SCAN", |con| con.scan_match(pattern))
    }

    /// How many connections this link has made (see the field).
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// The URL with any password hidden, for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Runs `f` on a live connection, reconnecting and retrying while Redis is unreachable or loading.
    pub fn call<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Con) -> RedisResult<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        let mut reloaded = false;
        let mut warned = false;
        self.follow_sentinels();
        loop {
            let outcome = match self.connection() {
                Ok(con) => match f(con) {
                    Ok(value) => return Ok(value),
                    Err(err) if is_missing_library(&err) && !reloaded => {
                        reloaded = true;
                        ensure_library_everywhere(con)
                    }
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            };
            let Err(err) = outcome else { continue };
            if let Some(leader) = crate::connection::target::moved_to(&err) {
                // A Raft follower named the leader: reconnect there at once.
                self.target.redirected(&leader);
                self.con = None;
                if started.elapsed() < self.options.give_up_after {
                    tracing::debug!("{what}: leader is now {leader}; reconnecting");
                    continue;
                }
            }
            if !is_transient(&err) || started.elapsed() >= self.options.give_up_after {
                return Err(self.error(err));
            }
            if stop_requested() {
                return Err(Error::Interrupted {
                    addr: self.addr.clone(),
                });
            }
            if self.connections == 0
                && self.target.is_single()
                && (self.never_reached || started.elapsed() >= FIRST_CONTACT)
                && (err.is_connection_refusal() || err.is_io_error() || err.is_timeout())
            {
                self.never_reached = true;
                let mut detail = gist(&err);
                if detail.contains("certificate") {
                    detail.push_str(
                        "; for rediss:// with a private CA, set SSL_CERT_FILE to the CA's PEM file",
                    );
                }
                return Err(Error::Unreachable {
                    addr: self.addr.clone(),
                    detail,
                });
            }
            self.con = None;
            if is_interrupted(&err) {
                tracing::debug!("{what} interrupted by a signal; retrying on a new connection");
                continue;
            }
            let wait = jitter(delay);
            // A Redis never reached yet gets one line, the error above, when first contact fails.
            let first_contact = self.connections == 0 && self.target.is_single();
            if warned || first_contact {
                tracing::debug!("{what}: still retrying ({err})");
            } else {
                tracing::warn!(
                    "redis at {} unreachable during {what} ({err}); retrying every {} ms at most",
                    self.addr,
                    MAX_BACKOFF.as_millis()
                );
                warned = true;
            }
            std::thread::sleep(wait);
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    /// Behind Sentinels, at most once per [`SENTINEL_RECHECK`]: drops the connection when the
    /// Sentinels now name another primary. A primary cut off from its replicas and Sentinels but
    /// not from this client answers as before, and its writes are lost when the partition heals
    /// (it becomes a replica of the one promoted meanwhile): without this check a client kept
    /// writing there, and a driver kept reading a job that no longer progressed anywhere it looked.
    fn follow_sentinels(&mut self) {
        let Some((named, asked)) = &self.sentinel_named else {
            return;
        };
        if self.con.is_none() || asked.elapsed() < SENTINEL_RECHECK {
            return;
        }
        let named = named.clone();
        // Short: a client cut off from the Sentinels keeps its server rather than stall each call,
        // and asks again only after SENTINEL_UNREACHED_PAUSE (the next check is due when `asked`
        // is SENTINEL_RECHECK old).
        let now_named = self.target.named_primary(Duration::from_millis(300));
        let asked = match &now_named {
            Some(_) => Instant::now(),
            None => Instant::now() + SENTINEL_UNREACHED_PAUSE - SENTINEL_RECHECK,
        };
        self.sentinel_named = Some((named.clone(), asked));
        if let Some(now_named) = now_named.filter(|n| *n != named) {
            tracing::warn!(
                "the Sentinels of {} now name {now_named} as the primary, not {named}: reconnecting",
                self.addr
            );
            self.con = None;
        }
    }

    fn connection(&mut self) -> RedisResult<&mut Con> {
        if self.con.is_none() {
            let (mut con, named) = self.target.connect(self.options.connect_timeout)?;
            con.set_timeouts(self.options.read_timeout)?;
            ensure_library_everywhere(&mut con)?;
            self.con = Some(con);
            self.sentinel_named = named.map(|n| (n, Instant::now()));
            self.connections += 1;
        }
        match self.con.as_mut() {
            Some(con) => Ok(con),
            None => unreachable!("connection was just set"),
        }
    }

    fn error(&mut self, source: RedisError) -> Error {
        if is_transient(&source) {
            self.con = None;
        }
        if let Some(detail) = auth_problem(&source) {
            return Error::Auth {
                addr: self.addr.clone(),
                detail,
            };
        }
        Error::Redis {
            addr: self.addr.clone(),
            cause: source,
        }
    }
}

/// What to tell a user whose URL gives no password to a Redis that wants one, or a wrong one.
/// Redis says the first as `NOAUTH`, or, when the first command it sees is large (the library
/// being loaded), as a protocol error about an unauthenticated bulk length.
fn auth_problem(err: &RedisError) -> Option<String> {
    let form = "redis://:PASSWORD@host:port, redis://USER:PASSWORD@host:port or \
                redis://host:port?password=PASSWORD, in --redis or REDIS_URL";
    let text = err.to_string();
    if err.kind() == redis::ErrorKind::AuthenticationFailed
        || text.contains("WRONGPASS")
        || text.contains("invalid username-password")
    {
        return Some(format!(
            "refused the user name or password in the URL: check them (the form: {form})"
        ));
    }
    if text.contains("NOAUTH") || text.contains("unauthenticated") {
        return Some(format!("needs a password: give it in the URL ({form})"));
    }
    None
}

/// Makes ring the process's TLS crypto provider (once; a no-op when one is already set). rustls
/// picks one by itself only when exactly one is compiled in, and the object store's HTTP client
/// brings aws-lc-rs beside the ring that `rediss://` links were built with: without a choice, the
/// first TLS connection panicked.
pub fn use_ring_for_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Longest pause between retries. Short, because a worker must be back within a fraction of a lease
/// once its coordinator is (a restarted Redis, a promoted replica, a new Raft leader), and a failed
/// attempt costs the server nothing.
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// How often a link behind Sentinels asks them whether its server is still the primary.
const SENTINEL_RECHECK: Duration = Duration::from_secs(1);

/// How long it waits before asking again when no Sentinel answered (300 ms lost per attempt).
const SENTINEL_UNREACHED_PAUSE: Duration = Duration::from_secs(5);

/// Errors after which the same call may succeed (on a new connection, or later).
fn is_transient(err: &RedisError) -> bool {
    // BUSY: Redis is running a long script and did not run this call. NOREPLICAS: a primary with
    // min-replicas-to-write has lost touch with its replicas (cut off, about to be failed over):
    // the Sentinels will name another.
    err.code() == Some("BUSY")
        || err.code() == Some("NOREPLICAS")
        || is_interrupted(err)
        || err.is_io_error()
        // The cluster client lost every connection to the node of a slot (a shard's primary died).
        || err.kind() == ErrorKind::ClusterConnectionNotFound
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.is_timeout()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    // A cluster shard whose primary failed, before its replica is promoted.
                    | ServerErrorKind::ClusterDown
                    // A Raft follower: the leader is elsewhere.
                    | ServerErrorKind::Moved
                    // A demoted primary refuses writes: find the new one.
                    | ServerErrorKind::ReadOnly
            )
        )
}

/// EINTR: a socket read with a timeout is not restarted after the process was stopped and continued
/// (signal(7)), which is exactly what happens to a worker slowed down by SIGSTOP/SIGCONT.
fn is_interrupted(err: &RedisError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::Interrupted)
        {
            return true;
        }
        source = e.source();
    }
    err.to_string().contains("(os error 4)")
}

/// The gist of an error, each part once (redis-rs repeats its cause in its message).
pub(crate) fn gist(err: &RedisError) -> String {
    let text = err.to_string();
    // The library's own refusals are written for the user; Redis's wrapping of them (the error
    // kind, and the function and line that raised it) is noise there.
    if let Some(at) = text.find("redcount: ") {
        let own = &text[at + "redcount: ".len()..];
        return own
            .split(" script: ")
            .next()
            .unwrap_or(own)
            .trim_end()
            .to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split(": ") {
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    let mut gist = parts.join(": ");
    // A Lua error the library did not raise itself (a bug in it) names a line of the joined
    // source: say which file of src/library/ and which line there.
    if let Some((file, line)) = text
        .split("@user_function:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .and_then(crate::library::library_line)
    {
        gist.push_str(&format!(" (library/{file}:{line})"));
    }
    if err.code() == Some("OOM") {
        return format!(
            "{gist} -- redis is out of memory: raise its maxmemory (`CONFIG SET maxmemory <bytes>`, \
             and in redis.conf), or free memory (`redcount jobs prune`, fewer jobs at once); the \
             job is kept as it is, and `redcount worker --job NAME` finishes it afterwards"
        );
    }
    gist
}

fn jitter(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let fraction = match getrandom::fill(&mut byte) {
        Ok(()) => f64::from(byte[0]) / 255.0,
        Err(_) => 0.5,
    };
    delay.mul_f64(0.5 + fraction / 2.0)
}

/// The URL schemes a link takes.
const SCHEMES: [&str; 5] = [
    "redis://",
    "rediss://",
    "redis+sentinel://",
    "redis+raft://",
    "redis+cluster://",
];

/// A URL as the clients take it: a password (and user) given as `?password=...&username=...`
/// moved into its user part, where every client reads it; a URL that is not one of
/// [`SCHEMES`] refused with the form it should have (`localhost:6379` and `http://...` are
/// common slips).
pub(crate) fn normalize_url(url: &str) -> Result<String> {
    let form = "write redis://[[user]:password@]host:port[/db] (also rediss://, \
                redis+sentinel://, redis+raft://, redis+cluster://)";
    if !SCHEMES.iter().any(|s| url.starts_with(s)) {
        let shown = redact_url(url);
        let hint = match url.split_once("://") {
            None => format!(" (for a server at {shown}: redis://{shown})"),
            Some((scheme, _)) => format!(" ('{scheme}://' is not a Redis URL scheme)"),
        };
        return Err(Error::BadUrl {
            url: shown,
            detail: format!("{form}{hint}"),
        });
    }
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_string());
    };
    let (mut user, mut password, mut rest) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("password", v)) => password = Some(v),
            Some(("username" | "user", v)) => user = Some(v),
            _ => rest.push(pair),
        }
    }
    if user.is_none() && password.is_none() {
        return Ok(url.to_string());
    }
    let (scheme, after) = base.split_at(base.find("://").map_or(0, |i| i + 3));
    if after.contains('@') {
        return Err(Error::BadUrl {
            url: redact_url(url),
            detail: "it has a password both before the host and as ?password=: give it once".into(),
        });
    }
    let auth = format!("{}:{}@", user.unwrap_or(""), password.unwrap_or(""));
    let mut out = format!("{scheme}{auth}{after}");
    if !rest.is_empty() {
        out.push('?');
        out.push_str(&rest.join("&"));
    }
    Ok(out)
}

/// `redis://user:secret@host:6379/0` -> `redis://user:***@host:6379/0` (and a
/// `?password=secret` hidden the same way).
pub fn redact_url(url: &str) -> String {
    if let Some((base, query)) = url.split_once('?') {
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_string(),
                _ => pair.to_string(),
            })
            .collect();
        return format!("{}?{}", redact_url(base), query.join("&"));
    }
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    let hidden = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        "***".to_string()
    };
    format!("{}{hidden}{}", &url[..scheme_end + 3], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::{gist, normalize_url, redact_url};

    #[test]
    fn a_lua_error_names_the_library_file_and_line_it_came_from() {
        // Line 1 of the joined source is kernel.lua's first; leases.lua follows kernel.lua.
        let kernel = crate::library::LIBRARY_FILES[0].1.lines().count();
        let text = format!(
            "user_script:1: attempt to index a nil value script: rc_claim, on @user_function:{}.",
            kernel + 3
        );
        let err = redis::RedisError::from((redis::ErrorKind::Client, "ERR", text));
        assert!(
            gist(&err).ends_with("(library/leases.lua:3)"),
            "{}",
            gist(&err)
        );
    }

    #[test]
    fn a_password_in_the_query_moves_into_the_url_and_bad_forms_are_named() {
        assert_eq!(
            normalize_url("redis://h:1/0?password=s3cret").expect("url"),
            "redis://:s3cret@h:1/0"
        );
        assert_eq!(
            normalize_url("redis://h:1?username=u&password=p&protocol=resp3").expect("url"),
            "redis://u:p@h:1?protocol=resp3"
        );
        let err = normalize_url("localhost:6379").expect_err("no scheme");
        assert!(err.to_string().contains("redis://localhost:6379"), "{err}");
        let err = normalize_url("http://:s3cret@h:1").expect_err("http");
        assert!(err.to_string().contains("'http://' is not"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = normalize_url("redis://:a@h:1?password=b").expect_err("twice");
        assert!(
            !err.to_string().contains('b') || !err.to_string().contains("=b"),
            "{err}"
        );
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("redis://h:1/0?password=s3cret&db=1"),
            "redis://h:1/0?password=***&db=1"
        );
        assert_eq!(
            redact_url("redis://:s3cret@127.0.0.1:7000"),
            "redis://:***@127.0.0.1:7000"
        );
        assert_eq!(redact_url("redis://u:p@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }
}
