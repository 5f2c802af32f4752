//! One job on one Redis: its keys, its link, and sending the library's calls (`calls/`, where each
//! function's call and its `Job` shorthand live) alone, in pairs, or again after a failover.

use std::collections::HashMap;

use redis::{Cmd, Value};

use crate::spec::{PlanFacts, DICTIONARY_TEXT, PLAN_FIELDS, SPEC_FIELDS};
use crate::{CommitOutcome, Error, JobKeys, JobSpec, Link, Result};

/// One job on one Redis.
pub struct Job {
    pub(crate) link: Link,
    pub(crate) keys: JobKeys,
    pub(crate) name: String,
    sync_replicas: u32,
    /// Numbers this handle's claims, so a claim retried after a lost reply is recognised.
    pub(crate) claims: u64,
    /// Numbers this handle's staged blobs.
    pub(crate) stages: u64,
    /// Random, unique to this handle: it prefixes claim and staging tokens, so a process that took
    /// over a worker's name (a restart under the same `--name`) never passes for its earlier life.
    pub(crate) instance: String,
    /// Where the job's counts are (read from its spec the first time a result is read).
    layout: Option<(crate::Aggregation, u32)>,
}

impl Job {
    /// Addresses job `name` over `link`.
    pub fn new(link: Link, name: &str) -> Result<Job> {
        Ok(Job {
            keys: JobKeys::new(name)?,
            link,
            name: name.to_string(),
            sync_replicas: 0,
            claims: 0,
            stages: 0,
            instance: random_instance(),
            layout: None,
        })
    }

    /// Sets the random instance that prefixes this handle's tokens: for a test that sends the
    /// very same calls twice (two processes must never share one).
    pub fn set_instance(&mut self, instance: &str) {
        self.instance = instance.to_string();
    }

    /// The link back, to address another job over the same connection (listing many jobs costs one
    /// connection, not one each).
    pub fn into_link(self) -> Link {
        self.link
    }

    /// After every commit, wait until `replicas` replicas have it (`WAIT`), the synchronous
    /// replication of the course's design. 0 (the default) does not wait.
    pub fn set_sync_replicas(&mut self, replicas: u32) {
        self.sync_replicas = replicas;
    }

    /// Replicas every commit waits for (see [`Job::set_sync_replicas`]).
    pub fn sync_replicas(&self) -> u32 {
        self.sync_replicas
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the job's coordinator is a Raft group (see [`Link::is_raft_group`]).
    pub fn is_raft_group(&self) -> bool {
        self.link.is_raft_group()
    }

    /// Redis address with the password hidden.
    pub fn addr(&self) -> &str {
        self.link.addr()
    }

    /// Runs a keyless command (`INFO`, `CONFIG GET`) with the link's retries, on the server that
    /// holds the job (in a Redis Cluster, the primary of the job's shard).
    pub fn query<T: redis::FromRedisValue>(&mut self, what: &str, cmd: &Cmd) -> Result<T> {
        self.link.query_at(what, &self.keys.meta, cmd)
    }

    /// Sends a read of the job's keys. Every read must be one a Raft group serves
    /// ([`crate::READ_COMMANDS`]): checked here in debug builds, so tests catch a new one.
    pub(crate) fn read<T: redis::FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T> {
        let name = cmd
            .args_iter()
            .next()
            .and_then(|a| match a {
                redis::Arg::Simple(b) => std::str::from_utf8(b).ok(),
                _ => None,
            })
            .unwrap_or("")
            .to_string();
        debug_assert!(
            crate::is_read(&name),
            "{name} is not in READ_COMMANDS: a Raft group would refuse it"
        );
        self.link.call(&name, |con| cmd.query(con))
    }

    pub(crate) fn fcall(
        &mut self,
        func: &'static str,
        args: impl AsRef<[Vec<u8>]>,
    ) -> Result<Value> {
        let cmd = self.fcall_cmd(func, args.as_ref());
        self.link
            .call(func, |con| cmd.query::<Value>(con))
            .map_err(|e| self.job_error(e))
    }

    /// The library's job-level errors as this crate's: `NOJOB` (the job is not there) and
    /// `STOPPED` (it ended without a result).
    fn job_error(&self, err: Error) -> Error {
        match err {
            Error::Redis { cause, .. } if cause.code() == Some("NOJOB") => self.no_job(),
            Error::Redis { cause, .. } if cause.code() == Some("STOPPED") => Error::Stopped {
                job: self.name.clone(),
                addr: self.link.addr().to_string(),
                reason: cause
                    .detail()
                    .unwrap_or("")
                    .trim_start_matches("redcount: job ")
                    .to_string(),
            },
            other => other,
        }
    }

    /// The `FCALL` (or `FCALL_RO`) of `func` with the job's keys and `args`.
    pub(crate) fn fcall_cmd(&self, func: &'static str, args: &[Vec<u8>]) -> Cmd {
        let mut cmd = redis::cmd(if crate::function(func).is_some_and(|f| f.read_only) {
            "FCALL_RO"
        } else {
            "FCALL"
        });
        let keys = self.keys.all();
        cmd.arg(func).arg(keys.len()).arg(&keys[..]).arg(args);
        cmd
    }

    /// Sends `cmds` (calls of the library and reads of this job's keys, each its own bounded
    /// command) in one pipeline, one round trip, and returns their replies in order. Every one is
    /// safe to send again, as the link may after a lost reply.
    pub(crate) fn pipeline(&mut self, what: &'static str, cmds: &[Cmd]) -> Result<Vec<Value>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys.meta.clone();
        self.link
            .call(what, |con| con.pipeline(&key, cmds))
            .map_err(|e| self.job_error(e))
    }

    fn no_job(&self) -> Error {
        Error::NoJob {
            job: self.name.clone(),
            addr: self.link.addr().to_string(),
            hint: "check --job and --redis (run `redcount status` to list what is there)",
        }
    }

    pub(crate) fn bad_reply(&self, call: &'static str, detail: impl Into<String>) -> Error {
        Error::Reply {
            addr: self.link.addr().to_string(),
            call,
            detail: detail.into(),
        }
    }

    /// Where the job's counts are added up, and over how many partitions (from its spec, once).
    pub fn layout(&mut self) -> Result<(crate::Aggregation, u32)> {
        if let Some(layout) = self.layout {
            return Ok(layout);
        }
        let spec = self.spec()?;
        let layout = (spec.aggregation, spec.partitions.get());
        self.layout = Some(layout);
        Ok(layout)
    }

    /// True when the job's meta hash exists.
    pub fn exists(&mut self) -> Result<bool> {
        self.read(redis::cmd("EXISTS").arg(&self.keys.meta))
    }

    /// Reads the job's spec back (workers call this once when they join).
    pub fn spec(&mut self) -> Result<JobSpec> {
        let values: Vec<Option<Vec<u8>>> = self.read(
            redis::cmd("HMGET")
                .arg(&self.keys.meta)
                .arg(&SPEC_FIELDS[..]),
        )?;
        if values.iter().all(Option::is_none) {
            return Err(self.no_job());
        }
        let fields: HashMap<&str, Vec<u8>> = SPEC_FIELDS
            .iter()
            .zip(values)
            .filter_map(|(field, value)| Some((*field, value?)))
            .collect();
        JobSpec::from_fields(&fields).map_err(|detail| self.bad_reply("HMGET spec", detail))
    }

    /// How the job's inputs were planned (None for a stream, or a job made by an older version).
    pub fn plan_facts(&mut self) -> Result<Option<PlanFacts>> {
        let values: Vec<Option<Vec<u8>>> = self.read(
            redis::cmd("HMGET")
                .arg(&self.keys.meta)
                .arg(&PLAN_FIELDS[..]),
        )?;
        Ok(PlanFacts::from_values(&values))
    }

    /// The text of the job's dictionary as it was when the job was created (None for a job
    /// without one, or made by a version that did not keep it).
    pub fn dictionary_text(&mut self) -> Result<Option<Vec<u8>>> {
        self.read(redis::cmd("HGET").arg(&self.keys.meta).arg(DICTIONARY_TEXT))
    }

    /// Sends a commit (`send`) and, with `sync_replicas`, waits until that many replicas have it.
    /// When the connection changed between the commit and the wait (the primary died and a replica
    /// took over), the commit may have died with the old primary: it is sent again. A commit applies
    /// once, so a repeat that finds it already applied is a duplicate, which here means applied.
    pub(crate) fn durable_commit(
        &mut self,
        mut send: impl FnMut(&mut Job) -> Result<CommitOutcome>,
    ) -> Result<CommitOutcome> {
        let mut sent_before = false;
        for _ in 0..3 {
            let connection = self.link.connections();
            let mut outcome = send(self)?;
            if sent_before && outcome == CommitOutcome::Duplicate {
                outcome = CommitOutcome::Applied;
            } else if outcome != CommitOutcome::Applied {
                return Ok(outcome);
            }
            if self.sync_replicas == 0 {
                return Ok(outcome);
            }
            self.wait_for_replicas()?;
            if self.link.connections() == connection {
                return Ok(outcome);
            }
            sent_before = true;
            tracing::warn!(
                "the connection to {} changed before a commit reached a replica (a failover?): sending it again",
                self.link.addr()
            );
        }
        Err(self.bad_reply(
            "commit",
            "the connection kept changing before a commit reached a replica",
        ))
    }

    /// Blocks until `sync_replicas` replicas have this connection's writes: up to a minute (after a
    /// failover the remaining replicas need a few seconds to follow the new primary), saying so after
    /// 10 s, then fails loudly rather than count an unreplicated commit.
    fn wait_for_replicas(&mut self) -> Result<()> {
        let wanted = i64::from(self.sync_replicas);
        for second in 0..60 {
            let mut cmd = redis::cmd("WAIT");
            cmd.arg(wanted).arg(1000);
            let acked: i64 = self.link.query_at("WAIT", &self.keys.meta, &cmd)?;
            if acked >= wanted {
                return Ok(());
            }
            if second == 10 {
                tracing::warn!(
                    "a commit has reached {acked} of {wanted} replica(s) of {} for 10 s; still waiting",
                    self.link.addr()
                );
            }
        }
        Err(self.bad_reply(
            "WAIT",
            format!(
                "a commit reached fewer than {wanted} replica(s) within 60 s (--sync-replicas): \
                 are the replicas of {} down?",
                self.link.addr()
            ),
        ))
    }

    /// What the driver watches of the server holding the job (see [`ServerFacts`]).
    pub fn server_facts(&mut self) -> Result<ServerFacts> {
        let info: String = self.query(
            "INFO server memory",
            redis::cmd("INFO").arg("server").arg("memory"),
        )?;
        Ok(ServerFacts::from_info(&info))
    }
}

/// What `INFO` says of the server that holds a job, as far as the driver cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFacts {
    /// The server's run id: another one means it restarted, or another server took over.
    pub run_id: String,
    /// The `maxmemory-policy` when it lets the server evict any key (`allkeys-*` with a
    /// `maxmemory`): a job's keys could vanish mid-job, so no job may run there. None when the
    /// server never evicts the job's keys (`noeviction`, or a `volatile-*` policy: redcount's keys
    /// have no TTL).
    pub evicting_policy: Option<String>,
    /// The server and its version, e.g. `Valkey 9.1.2` or `Redis 7.0.15`.
    pub server: String,
}

impl ServerFacts {
    pub(crate) fn from_info(info: &str) -> ServerFacts {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        };
        let maxmemory: u64 = field("maxmemory").and_then(|v| v.parse().ok()).unwrap_or(0);
        let policy = field("maxmemory_policy").unwrap_or_default();
        ServerFacts {
            run_id: field("run_id").unwrap_or_default(),
            evicting_policy: (maxmemory > 0 && policy.starts_with("allkeys-")).then_some(policy),
            server: crate::server_name(info),
        }
    }

    /// Why a job cannot run on this server, with what to change; None when it can.
    pub fn eviction_problem(&self, addr: &str) -> Option<String> {
        let policy = self.evicting_policy.as_ref()?;
        Some(format!(
            "redis at {addr} evicts any key when it runs out of memory (maxmemory-policy \
             {policy}): a job's keys could vanish mid-job and its counts come out short. Set \
             `CONFIG SET maxmemory-policy noeviction` (a volatile-* policy is fine too: redcount's \
             keys have no TTL), or use a Redis that does not evict"
        ))
    }
}

/// Eight random hex digits (falls back on the pid and the time where the OS gives no randomness).
fn random_instance() -> String {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (std::process::id() ^ t).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::ServerFacts;

    #[test]
    fn only_a_policy_that_evicts_any_key_under_a_limit_is_a_problem() {
        let info = |limit: u64, policy: &str| {
            format!("# Server\r\nrun_id:abc\r\n# Memory\r\nmaxmemory:{limit}\r\nmaxmemory_policy:{policy}\r\n")
        };
        let facts = ServerFacts::from_info(&info(1 << 20, "allkeys-lru"));
        assert_eq!(facts.run_id, "abc");
        assert_eq!(facts.evicting_policy.as_deref(), Some("allkeys-lru"));
        assert!(facts
            .eviction_problem("x")
            .is_some_and(|p| p.contains("noeviction")));
        for (limit, policy) in [
            (1 << 20, "noeviction"),
            (1 << 20, "volatile-lru"),
            (0, "allkeys-lfu"),
        ] {
            assert_eq!(
                ServerFacts::from_info(&info(limit, policy)).evicting_policy,
                None
            );
        }
    }
}
