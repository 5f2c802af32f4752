//! Typed calls of the library for one job: what the driver, the workers and `status`/`top` say to Redis.

use std::collections::HashMap;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use redis::{Cmd, Value};

use crate::spec::{millis, PlanFacts, DICTIONARY_TEXT, PLAN_FIELDS, SPEC_FIELDS};
use crate::task::{Format, NewTask, Task};
use crate::{reply, Error, JobKeys, JobSpec, Link, Now, Result, Status};

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
        let mut args = vec![now.arg(), run_id.as_bytes().to_vec()];
        for (field, value) in spec.to_fields() {
            args.push(field.as_bytes().to_vec());
            args.push(value);
        }
        if let Some(text) = dictionary {
            args.push(DICTIONARY_TEXT.as_bytes().to_vec());
            args.push(text.to_vec());
        }
        for (field, value) in plan.map(PlanFacts::to_fields).into_iter().flatten() {
            args.push(field.as_bytes().to_vec());
            args.push(value);
        }
        let items = self.array("rc_create", args)?;
        match items.as_slice() {
            [verdict, n] if reply::string(verdict).as_deref() == Some("leftovers") => {
                Err(Error::Stopped {
                    job: self.name.clone(),
                    addr: self.link.addr().to_string(),
                    reason: format!(
                        "has {} key(s) left but no meta hash ({}): part of it was evicted or \
                         deleted by another client, so it cannot be counted exactly; remove what \
                         is left with `redcount jobs rm {} --force` and run it again",
                        reply::uint(n).unwrap_or(0),
                        self.keys.meta,
                        self.name
                    ),
                })
            }
            [created, id] => {
                // Listed from now on (also when it was there already: made by an older version).
                crate::register_jobs(&mut self.link, now, std::slice::from_ref(&self.name), true)?;
                Ok((
                    reply::int(created) == Some(1),
                    reply::string(id).unwrap_or_default(),
                ))
            }
            _ => Err(self.bad_reply("rc_create", format!("{items:?}"))),
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
        let mut args = Vec::with_capacity(1 + tasks.len() * 8);
        args.push(now.into().arg());
        for t in tasks {
            args.push(arg(t.seq));
            args.push(t.path.as_os_str().as_bytes().to_vec());
            args.push(arg(t.start));
            args.push(arg(t.end));
            args.push(t.format.as_str().as_bytes().to_vec());
            args.push(crate::task::encode_more(&t.more));
            args.push(t.due_ms.map(arg).unwrap_or_default());
            args.push(t.version.clone().unwrap_or_default().into_bytes());
        }
        let items = self.array("rc_enqueue", args)?;
        let verdict = items.first().and_then(reply::string).unwrap_or_default();
        match (verdict.as_str(), &items[1..]) {
            ("ok", [added, skipped]) => Ok(Enqueued::Added {
                added: reply::uint(added).unwrap_or(0),
                skipped: reply::uint(skipped).unwrap_or(0),
            }),
            ("gap", [last]) => Ok(Enqueued::Gap {
                last_seq: reply::uint(last).unwrap_or(0),
            }),
            _ => Err(self.bad_reply("rc_enqueue", format!("{items:?}"))),
        }
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
        let mut args = vec![now.into().arg(), arg(expected_tasks)];
        for (field, value) in plan.map(PlanFacts::to_fields).into_iter().flatten() {
            args.push(field.as_bytes().to_vec());
            args.push(value);
        }
        let items = self.array("rc_seal", args)?;
        match items.as_slice() {
            [sealed, tasks] => Ok((
                reply::int(sealed) == Some(1),
                reply::uint(tasks).unwrap_or(0),
            )),
            _ => Err(self.bad_reply("rc_seal", format!("{items:?}"))),
        }
    }

    /// Claims tasks for a worker (expired leases first, then new ones, then maybe a straggler's).
    pub fn claim(&mut self, now: impl Into<Now>, request: &ClaimRequest) -> Result<Claimed> {
        let args = self.claim_args(now.into(), request);
        let items = self.array("rc_claim", args)?;
        self.parse_claim(&items)
    }

    /// The arguments of `rc_claim`, with this handle's next token.
    pub(crate) fn claim_args(&mut self, now: Now, request: &ClaimRequest) -> Vec<Vec<u8>> {
        let args = vec![
            now.arg(),
            request.worker.as_bytes().to_vec(),
            arg(millis(request.lease)),
            arg(request.max_tasks.min(MAX_ARG)),
            arg(request.max_bytes.min(MAX_ARG)),
            arg(request.max_attempts),
            arg(millis(request.live_window)),
            arg(request.speculate_factor),
            arg(request.speculate_min.as_millis()),
            // Unique per call; the link re-sends the same bytes when it retries after a lost reply.
            format!("{}-{}", self.instance, self.claims).into_bytes(),
        ];
        self.claims += 1;
        args
    }

    /// Reads `rc_claim`'s reply.
    pub(crate) fn parse_claim(&self, items: &[Value]) -> Result<Claimed> {
        if items.len() < 4 {
            return Err(self.bad_reply("rc_claim", format!("{items:?}")));
        }
        let mut tasks = Vec::with_capacity(items.len() - 4);
        for item in &items[4..] {
            let task = match item {
                Value::Array(f) => parse_task(f),
                _ => None,
            };
            tasks.push(task.ok_or_else(|| self.bad_reply("rc_claim", format!("task {item:?}")))?);
        }
        let expiry = reply::int(&items[1]).unwrap_or(-1);
        Ok(Claimed {
            tasks,
            finished: reply::int(&items[0]) == Some(1),
            next_expiry: u64::try_from(expiry).ok().map(Duration::from_millis),
            last_task_id: reply::string(&items[2]).unwrap_or_else(|| "0-0".into()),
            last_done_id: reply::string(&items[3]).unwrap_or_else(|| "0-0".into()),
        })
    }

    /// Notes an event (a fault injected, a worker restarted ...) in the job's `events` stream.
    pub fn event(&mut self, now: impl Into<Now>, kind: &str, detail: &str) -> Result<u64> {
        let args = vec![
            now.into().arg(),
            kind.as_bytes().to_vec(),
            detail.as_bytes().to_vec(),
        ];
        let value = self.fcall("rc_event", args)?;
        reply::uint(&value).ok_or_else(|| self.bad_reply("rc_event", format!("{value:?}")))
    }

    /// Extends the leases `worker` still holds among `ids`; returns those.
    pub fn renew(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        lease: Duration,
        ids: &[String],
    ) -> Result<Vec<String>> {
        let mut args = vec![
            now.into().arg(),
            worker.as_bytes().to_vec(),
            arg(millis(lease)),
        ];
        args.extend(ids.iter().map(|id| id.as_bytes().to_vec()));
        let items = self.array("rc_renew", args)?;
        Ok(items.iter().filter_map(reply::string).collect())
    }

    /// Commits tasks `(id, words)` with their merged `counts`, exactly once.
    pub fn commit<'a>(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        tasks: &[(String, u64)],
        counts: impl ExactSizeIterator<Item = (&'a [u8], u64)>,
    ) -> Result<CommitOutcome> {
        let mut args = Vec::with_capacity(3 + tasks.len() * 2 + counts.len() + 64);
        args.push(now.into().arg());
        args.push(worker.as_bytes().to_vec());
        args.push(arg(tasks.len()));
        for (id, words) in tasks {
            args.push(id.as_bytes().to_vec());
            args.push(arg(*words));
        }
        // Grouped by count: `count, k, word * k` (library/commit.lua checks each count once).
        let mut by_count: std::collections::BTreeMap<u64, Vec<&[u8]>> =
            std::collections::BTreeMap::new();
        for (word, count) in counts {
            by_count.entry(count).or_default().push(word);
        }
        for (count, words) in by_count {
            args.push(arg(count));
            args.push(arg(words.len()));
            args.extend(words.into_iter().map(<[u8]>::to_vec));
        }
        let items = self.durable_commit(|job| job.array("rc_commit", &args))?;
        self.commit_outcome("rc_commit", &items)
    }

    /// What a commit's reply says.
    pub(crate) fn commit_outcome(
        &self,
        call: &'static str,
        items: &[Value],
    ) -> Result<CommitOutcome> {
        let verdict = items.first().and_then(reply::string).unwrap_or_default();
        match verdict.as_str() {
            "ok" => Ok(CommitOutcome::Applied),
            "dup" => Ok(CommitOutcome::Duplicate),
            "partial" => Ok(CommitOutcome::Partial(
                items[1..].iter().filter_map(reply::string).collect(),
            )),
            _ => Err(self.bad_reply(call, format!("{items:?}"))),
        }
    }

    /// Sends a commit (`send`) and, with `sync_replicas`, waits until that many replicas have it.
    /// When the connection changed between the commit and the wait (the primary died and a replica
    /// took over), the commit may have died with the old primary: it is sent again. A commit applies
    /// once, so a repeat that finds it already applied is a duplicate, which here means applied.
    pub(crate) fn durable_commit(
        &mut self,
        mut send: impl FnMut(&mut Job) -> Result<Vec<Value>>,
    ) -> Result<Vec<Value>> {
        let mut sent_before = false;
        for _ in 0..3 {
            let connection = self.link.connections();
            let mut items = send(self)?;
            let verdict = items.first().and_then(reply::string).unwrap_or_default();
            if sent_before && verdict == "dup" {
                items = vec![Value::BulkString(b"ok".to_vec())];
            } else if verdict != "ok" {
                return Ok(items);
            }
            if self.sync_replicas == 0 {
                return Ok(items);
            }
            self.wait_for_replicas()?;
            if self.link.connections() == connection {
                return Ok(items);
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
        let args = vec![
            now.into().arg(),
            worker.as_bytes().to_vec(),
            id.as_bytes().to_vec(),
            error.as_bytes().to_vec(),
        ];
        let items = self.array("rc_fail", args)?;
        Ok(items.first().and_then(reply::string).as_deref() == Some("ok"))
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
        let args = vec![
            now.into().arg(),
            worker.as_bytes().to_vec(),
            id.as_bytes().to_vec(),
            arg(index),
            path.as_os_str().as_bytes().to_vec(),
            error.as_bytes().to_vec(),
        ];
        let items = self.array("rc_fail_piece", args)?;
        Ok(items.first().and_then(reply::string).as_deref() == Some("ok"))
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
        let args = vec![
            now.into().arg(),
            worker.as_bytes().to_vec(),
            id.as_bytes().to_vec(),
            arg(millis(live_window)),
        ];
        let items = self.array("rc_defer", args)?;
        match (
            items.first().and_then(reply::string).as_deref(),
            items.get(1),
        ) {
            (Some("deferred"), _) => Ok(Deferral::Deferred),
            (Some("dup"), _) => Ok(Deferral::NotHeld),
            (Some("last"), Some(n)) => Ok(Deferral::NobodyCan(reply::uint(n).unwrap_or(1))),
            _ => Err(self.bad_reply("rc_defer", format!("{items:?}"))),
        }
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
        let args = vec![
            now.into().arg(),
            worker.as_bytes().to_vec(),
            id.as_bytes().to_vec(),
            arg(cut),
        ];
        let items = self.array("rc_split", args)?;
        match items.as_slice() {
            [verdict, a, b] if reply::string(verdict).as_deref() == Some("ok") => Ok(Some((
                reply::string(a).unwrap_or_default(),
                reply::string(b).unwrap_or_default(),
            ))),
            [verdict] if reply::string(verdict).as_deref() == Some("dup") => Ok(None),
            _ => Err(self.bad_reply("rc_split", format!("{items:?}"))),
        }
    }

    /// Ends the job without a result (see [`StopKind`]). False when it had already ended (finished,
    /// or stopped before: the first reason stays).
    pub fn stop(&mut self, now: impl Into<Now>, kind: StopKind, reason: &str) -> Result<bool> {
        let args = vec![
            now.into().arg(),
            kind.as_str().as_bytes().to_vec(),
            reason.as_bytes().to_vec(),
        ];
        let items = self.array("rc_stop", args)?;
        Ok(items.first().and_then(reply::string).as_deref() == Some("ok"))
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
        let args = vec![
            now.into().arg(),
            worker.as_bytes().to_vec(),
            self.instance.as_bytes().to_vec(),
            arg(millis(live_window)),
        ];
        let items = self.array("rc_join", args)?;
        match (
            items.first().and_then(reply::string).as_deref(),
            items.get(1).and_then(reply::uint),
        ) {
            (Some("ok"), _) => Ok(Joined::Yes),
            (Some("taken"), Some(ms)) => Ok(Joined::Taken(Duration::from_millis(ms))),
            _ => Err(self.bad_reply("rc_join", format!("{items:?}"))),
        }
    }

    /// Says that these workers exited: they stop counting as live at once (`rc_leave`), and their
    /// names are free. Returns how many of them were still registered.
    pub fn leave(&mut self, now: impl Into<Now>, workers: &[String]) -> Result<u64> {
        let mut args = vec![now.into().arg()];
        args.extend(workers.iter().map(|w| w.as_bytes().to_vec()));
        let value = self.fcall("rc_leave", args)?;
        reply::uint(&value).ok_or_else(|| self.bad_reply("rc_leave", format!("{value:?}")))
    }

    /// Deletes every key of the job (refused while it runs unless `force`). Returns how many. Each
    /// `rc_drop` call deletes a bounded batch, so a large job takes several calls, with every other
    /// client of Redis served in between.
    pub fn drop_job(&mut self, now: impl Into<Now>, force: bool) -> Result<u64> {
        let now = now.into();
        let mut deleted = 0;
        loop {
            let items = self.array(
                "rc_drop",
                vec![now.arg(), if force { b"1".to_vec() } else { b"0".to_vec() }],
            )?;
            let (Some(n), Some(more)) = (
                items.first().and_then(reply::uint),
                items.get(1).and_then(reply::uint),
            ) else {
                return Err(self.bad_reply("rc_drop", format!("{items:?}")));
            };
            deleted += n;
            if more == 0 {
                crate::register_jobs(&mut self.link, now, std::slice::from_ref(&self.name), false)?;
                return Ok(deleted);
            }
        }
    }

    /// Progress counters; workers seen within `live_window` count as live.
    pub fn status(&mut self, now: impl Into<Now>, live_window: Duration) -> Result<Status> {
        let items = self.array(
            "rc_status",
            vec![now.into().arg(), arg(millis(live_window))],
        )?;
        Ok(Status::from_pairs(&items))
    }

    /// [`Job::status`] and what the driver watches of the server (`INFO server memory`: its run
    /// id, which changes on every restart or failover, and whether it may evict the job's keys), in
    /// one round trip.
    pub fn status_and_server(
        &mut self,
        now: impl Into<Now>,
        live_window: Duration,
    ) -> Result<(Status, ServerFacts)> {
        let status = self.fcall_cmd("rc_status", &[now.into().arg(), arg(millis(live_window))]);
        let mut info = redis::cmd("INFO");
        info.arg("server").arg("memory");
        let mut replies = self.pipeline("rc_status", &[status, info])?.into_iter();
        let (Some(status), Some(info)) = (replies.next(), replies.next()) else {
            return Err(self.bad_reply("rc_status", "a pipeline of two answered fewer"));
        };
        let items =
            reply::array(status).ok_or_else(|| self.bad_reply("rc_status", "not an array"))?;
        let info: String = redis::FromRedisValue::from_redis_value(info).unwrap_or_default();
        Ok((Status::from_pairs(&items), ServerFacts::from_info(&info)))
    }

    /// What the driver watches of the server holding the job (see [`ServerFacts`]).
    pub fn server_facts(&mut self) -> Result<ServerFacts> {
        let info: String = self.query(
            "INFO server memory",
            redis::cmd("INFO").arg("server").arg("memory"),
        )?;
        Ok(ServerFacts::from_info(&info))
    }

    /// Calls `func` and reads its array reply (arguments by value or borrowed: a commit re-sent after
    /// a failover passes the same ones again without copying them).
    pub(crate) fn array(
        &mut self,
        func: &'static str,
        args: impl AsRef<[Vec<u8>]>,
    ) -> Result<Vec<Value>> {
        let value = self.fcall(func, args)?;
        reply::array(value).ok_or_else(|| self.bad_reply(func, "not an array"))
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
    fn as_str(self) -> &'static str {
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

/// The largest integer the library takes (15 digits): budgets above it mean "no limit" anyway.
const MAX_ARG: u64 = 999_999_999_999_999;

fn arg(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

fn parse_task(f: &[Value]) -> Option<Task> {
    let [id, path, start, end, fmt, injected, attempts, more, solo, version, charged] = f else {
        return None;
    };
    let version = reply::string(version)?;
    Some(Task {
        id: reply::string(id)?,
        path: PathBuf::from(std::ffi::OsString::from_vec(reply::bytes(path)?)),
        start: reply::uint(start)?,
        end: reply::uint(end)?,
        format: Format::parse(&reply::string(fmt)?)?,
        version: (!version.is_empty()).then_some(version),
        more: crate::task::decode_more(&reply::bytes(more)?)?,
        injected_ms: reply::uint(injected)?,
        attempts: u32::try_from(reply::uint(attempts)?).ok()?,
        solo: reply::int(solo)? == 1,
        charged: u32::try_from(reply::uint(charged)?).ok()?,
    })
}
