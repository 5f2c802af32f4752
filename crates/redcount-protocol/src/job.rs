//! One job on one Redis: its keys, and the library calls the driver, the workers and
//! `status`/`top` send it (each call's arguments and reply are its module's in `calls/`).

use std::collections::HashMap;
use std::time::Duration;

use redis::{Cmd, Value};

use crate::calls::lifecycle::Created;
use crate::calls::{self, Call as _};
use crate::spec::{PlanFacts, DICTIONARY_TEXT, PLAN_FIELDS, SPEC_FIELDS};
use crate::task::{NewTask, Task};
use crate::{Error, JobKeys, JobSpec, Link, Now, Result, Status};

/// What a worker asks of `claim`.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// The claiming worker's consumer name.
    pub worker: &'a str,
    /// Lease given to every task handed out.
    pub lease: Duration,
    /// Most tasks handed out.
    pub max_tasks: u64,
    /// Byte budget for new tasks (one task always fits).
    pub max_bytes: u64,
    /// Deliveries after which an expiring task is given up.
    pub max_attempts: u32,
    /// Workers heard from within this window count as live (for the fair share).
    pub live_window: Duration,
    /// When idle, take over a task running longer than this many times the recent p90 (0: never).
    pub speculate_factor: f64,
    /// ... and longer than this.
    pub speculate_min: Duration,
}

/// What `claim` handed out, and what to wait for when it handed out nothing.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The tasks handed out (none when there was nothing to do).
    pub tasks: Vec<Task>,
    /// The job is finished: sealed, all delivered, none pending, done + dead = tasks.
    pub finished: bool,
    /// Time until the earliest lease expires (on the coordinator's lease clock), when an idle
    /// worker should look again.
    pub next_expiry: Option<Duration>,
    /// Newest task id and newest done id, to block on with [`Job::wait_for_change`].
    pub last_task_id: String,
    /// Newest done id, to block on with [`Job::wait_for_change`].
    pub last_done_id: String,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The new tasks were added; those the job already held were skipped.
    Added {
        /// Tasks added.
        added: u64,
        /// Tasks already there.
        skipped: u64,
    },
    /// Nothing was added: the job holds tasks 1..=`last_seq` only (a rollback lost the rest), and
    /// the batch did not continue from there. Re-send from `last_seq + 1`.
    Gap {
        /// The job's last task.
        last_seq: u64,
    },
}

/// What became of a task whose input a worker could not open (`rc_defer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// Released, uncharged, for another live worker (claims hand it to them first).
    Deferred,
    /// Every live worker (this many) has said it cannot open it: fail it as usual.
    NobodyCan(u64),
    /// This worker no longer holds it: drop it.
    NotHeld,
}

/// How a commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The counts were applied, once.
    Applied,
    /// Every task had already been committed (or given up): nothing changed.
    Duplicate,
    /// These tasks were already committed; nothing changed, recount the others without them.
    Partial(Vec<String>),
}

/// One job on one Redis.
pub struct Job {
    pub(crate) link: Link,
    pub(crate) keys: JobKeys,
    name: String,
    sync_replicas: u32,
    /// Numbers this handle's claims, so a claim retried after a lost reply is recognised.
    claims: u64,
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

    /// Creates the job with `spec` unless it exists. Returns (created, the job's run id).
    pub fn create(
        &mut self,
        now: impl Into<Now>,
        run_id: &str,
        spec: &JobSpec,
    ) -> Result<(bool, String)> {
        self.create_with_dictionary(now, run_id, spec, None, None)
    }

    /// [`Job::create`], with the text of the spec's `--dictionary` file: it travels in the job,
    /// so every worker uses the words the job was started with, whatever happens to the file
    /// meanwhile or on other hosts; and with the `plan` a batch job's inputs were cut into, which
    /// a later `run` of the same job resumes from.
    pub fn create_with_dictionary(
        &mut self,
        now: impl Into<Now>,
        run_id: &str,
        spec: &JobSpec,
        dictionary: Option<&[u8]>,
        plan: Option<&PlanFacts>,
    ) -> Result<(bool, String)> {
        let now = now.into();
        let made = self.send(&calls::lifecycle::Create {
            now,
            run_id,
            spec,
            dictionary,
            plan,
        })?;
        match made {
            Created::Leftovers(n) => Err(Error::Stopped {
                job: self.name.clone(),
                addr: self.link.addr().to_string(),
                reason: format!(
                    "has {n} key(s) left but no meta hash ({}): part of it was evicted or \
                     deleted by another client, so it cannot be counted exactly; remove what \
                     is left with `redcount jobs rm {} --force` and run it again",
                    self.keys.meta, self.name
                ),
            }),
            Created::Job { created, run_id } => {
                // Listed from now on (also when it was there already: made by an older version).
                crate::register_jobs(&mut self.link, now, std::slice::from_ref(&self.name), true)?;
                Ok((created, run_id))
            }
        }
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

    /// Adds tasks (idempotent: tasks already there are skipped), which must continue the job's run
    /// of sequence numbers: see [`Enqueued`].
    pub fn enqueue(&mut self, now: impl Into<Now>, tasks: &[NewTask]) -> Result<Enqueued> {
        self.send(&calls::lifecycle::Enqueue {
            now: now.into(),
            tasks,
        })
    }

    /// Seals the job. With `expected_tasks` > 0 it refuses when the job holds a different number of
    /// tasks (a rollback lost some) and returns (false, tasks there).
    pub fn seal(&mut self, now: impl Into<Now>, expected_tasks: u64) -> Result<(bool, u64)> {
        self.seal_with_plan(now, expected_tasks, None)
    }

    /// [`Job::seal`], writing how a batch job's inputs were planned in the same call (known only
    /// once they are all listed): what a later `run` of the job resumes from.
    pub fn seal_with_plan(
        &mut self,
        now: impl Into<Now>,
        expected_tasks: u64,
        plan: Option<&PlanFacts>,
    ) -> Result<(bool, u64)> {
        self.send(&calls::lifecycle::Seal {
            now: now.into(),
            expected_tasks,
            plan,
        })
    }

    /// Claims tasks for a worker (expired leases first, then new ones, then maybe a straggler's).
    pub fn claim(&mut self, now: impl Into<Now>, request: &ClaimRequest) -> Result<Claimed> {
        let claim = self.claim_call(now.into(), request);
        self.send(&claim)
    }

    /// The `rc_claim` call of `request`, with this handle's next token (each claim needs its own:
    /// a repeated token is taken for the same call retried).
    pub fn claim_call<'a>(
        &mut self,
        now: Now,
        request: &'a ClaimRequest<'a>,
    ) -> calls::claim::Claim<'a> {
        self.claims += 1;
        calls::claim::Claim {
            now,
            request,
            // Unique per call; the link re-sends the same bytes when it retries after a lost reply.
            token: format!("{}-{}", self.instance, self.claims - 1),
        }
    }

    /// Notes an event (a fault injected, a worker restarted ...) in the job's `events` stream.
    pub fn event(&mut self, now: impl Into<Now>, kind: &str, detail: &str) -> Result<u64> {
        self.send(&calls::jobs::Event {
            now: now.into(),
            kind,
            detail,
        })
    }

    /// Extends the leases `worker` still holds among `ids`; returns those.
    pub fn renew(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        lease: Duration,
        ids: &[String],
    ) -> Result<Vec<String>> {
        self.send(&calls::claim::Renew {
            now: now.into(),
            worker,
            lease,
            ids,
        })
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

    /// Gives up on task `id` with `error` (moved to the dead stream). False if it was no longer pending.
    pub fn fail(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        id: &str,
        error: &str,
    ) -> Result<bool> {
        self.send(&calls::failures::Fail {
            now: now.into(),
            worker,
            id,
            error,
        })
    }

    /// Records that piece `index` (`path`) of packed task `id` cannot be processed, once; the task's
    /// other pieces are committed as usual. False if the task was no longer leased.
    pub fn fail_piece(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        id: &str,
        index: usize,
        path: &std::path::Path,
        error: &str,
    ) -> Result<bool> {
        self.send(&calls::failures::FailPiece {
            now: now.into(),
            worker,
            id,
            index,
            path,
            error,
        })
    }

    /// Says this worker cannot open task `id`'s input (missing or unreadable on its host): the task
    /// goes to another live worker if one has not said so too. See [`Deferral`].
    pub fn defer(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        id: &str,
        live_window: Duration,
    ) -> Result<Deferral> {
        self.send(&calls::failures::Defer {
            now: now.into(),
            worker,
            id,
            live_window,
        })
    }

    /// Splits task `id`, which `worker` holds alone after its last holder fell silent counting it:
    /// into files `1..=cut` and the rest (a task of several files), or at byte `cut` (a task of one
    /// range). The parts wait to be handed out alone. None when `worker` no longer holds it.
    pub fn split(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        id: &str,
        cut: u64,
    ) -> Result<Option<(String, String)>> {
        self.send(&calls::failures::Split {
            now: now.into(),
            worker,
            id,
            cut,
        })
    }

    /// Ends the job without a result (see [`StopKind`]). False when it had already ended (finished,
    /// or stopped before: the first reason stays).
    pub fn stop(&mut self, now: impl Into<Now>, kind: StopKind, reason: &str) -> Result<bool> {
        self.send(&calls::jobs::Stop {
            now: now.into(),
            kind,
            reason,
        })
    }

    /// Fails the job because of `reason` (a key of it found lost or spoilt) and returns the error
    /// to stop with: the job's workers leave and its driver reports the reason.
    pub fn fail_job(&mut self, now: Now, reason: &str) -> Error {
        if let Err(err) = self.stop(now, StopKind::Failed, reason) {
            tracing::warn!("could not mark job '{}' failed: {err}", self.name);
        }
        Error::Stopped {
            job: self.name.clone(),
            addr: self.link.addr().to_string(),
            reason: format!("failed: {reason}"),
        }
    }

    /// Takes the name `worker` for this process (see [`Joined`]); `live_window` is how recently
    /// another process must have been heard from under that name to keep it.
    pub fn join(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        live_window: Duration,
    ) -> Result<Joined> {
        let instance = self.instance.clone();
        self.send(&calls::jobs::Join {
            now: now.into(),
            worker,
            instance: &instance,
            live_window,
        })
    }

    /// Says that these workers exited: they stop counting as live at once (`rc_leave`), and their
    /// names are free. Returns how many of them were still registered.
    pub fn leave(&mut self, now: impl Into<Now>, workers: &[String]) -> Result<u64> {
        self.send(&calls::jobs::Leave {
            now: now.into(),
            workers,
        })
    }

    /// Deletes every key of the job (refused while it runs unless `force`). Returns how many. Each
    /// `rc_drop` call deletes a bounded batch, so a large job takes several calls, with every other
    /// client of Redis served in between.
    pub fn drop_job(&mut self, now: impl Into<Now>, force: bool) -> Result<u64> {
        let now = now.into();
        let mut deleted = 0;
        loop {
            let (n, more) = self.send(&calls::jobs::Drop { now, force })?;
            deleted += n;
            if !more {
                crate::register_jobs(&mut self.link, now, std::slice::from_ref(&self.name), false)?;
                return Ok(deleted);
            }
        }
    }

    /// Progress counters; workers seen within `live_window` count as live.
    pub fn status(&mut self, now: impl Into<Now>, live_window: Duration) -> Result<Status> {
        self.send(&calls::reads::StatusOf {
            now: now.into(),
            live_window,
        })
    }

    /// [`Job::status`] and what the driver watches of the server (`INFO server memory`: its run
    /// id, which changes on every restart or failover, and whether it may evict the job's keys), in
    /// one round trip.
    pub fn status_and_server(
        &mut self,
        now: impl Into<Now>,
        live_window: Duration,
    ) -> Result<(Status, ServerFacts)> {
        let call = calls::reads::StatusOf {
            now: now.into(),
            live_window,
        };
        let mut info = redis::cmd("INFO");
        info.arg("server").arg("memory");
        let cmds = [self.command(&call), info];
        let mut replies = self.pipeline("rc_status", &cmds)?.into_iter();
        let (Some(status), Some(info)) = (replies.next(), replies.next()) else {
            return Err(self.bad_reply("rc_status", "a pipeline of two answered fewer"));
        };
        let status = call
            .reply(status)
            .map_err(|detail| self.bad_reply("rc_status", detail))?;
        let info: String = redis::FromRedisValue::from_redis_value(info).unwrap_or_default();
        Ok((status, ServerFacts::from_info(&info)))
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
    fn from_info(info: &str) -> ServerFacts {
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

/// How a job ends without a result (`rc_stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// Stopped on purpose: `jobs cancel`, or a stream stopped before its end.
    Cancelled,
    /// Cannot give an exact result any more (a key it needs was lost).
    Failed,
}

impl StopKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StopKind::Cancelled => "cancelled",
            StopKind::Failed => "failed",
        }
    }
}

/// Whether a worker may use its name in a job (`rc_join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// The name is this process's now.
    Yes,
    /// Another live process holds the name; it was heard from this long ago.
    Taken(Duration),
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
