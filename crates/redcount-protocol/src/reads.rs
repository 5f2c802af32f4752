//! Reading a job's results and records (for reports, `top`, `status`, latency): plain reads, outside
//! the library, since they change nothing.

use std::time::Duration;

use crate::keys::{job_of_meta_key, JOBS_KEY, META_KEY_PATTERN};
use crate::partials::TOP_PER_PARTITION;
use crate::{Aggregation, Job, Link, Result};

/// The names of the jobs in the Redis behind `link`, sorted: those in its register (`rc:jobs`,
/// one short read, however many keys other applications keep there). A Redis with no register
/// yet (only older versions of redcount used it) is scanned once, and what is found registered.
pub fn job_names(link: &mut Link) -> Result<Vec<String>> {
    let mut names: Vec<String> = link.query_at(
        "ZRANGE rc:jobs",
        JOBS_KEY,
        redis::cmd("ZRANGE").arg(JOBS_KEY).arg(0).arg(-1),
    )?;
    if names.is_empty() {
        let exists: bool = link.query_at(
            "EXISTS rc:jobs",
            JOBS_KEY,
            redis::cmd("EXISTS").arg(JOBS_KEY),
        )?;
        if !exists {
            names = scan_job_names(link)?;
        }
    }
    names.sort();
    Ok(names)
}

/// The names of every job found by scanning the whole keyspace (every shard of a cluster) for
/// their meta hashes, sorted, and registered: `jobs --scan` finds jobs an older redcount made,
/// or a register lost. Each page is a bounded call, but the whole walk reads every key.
pub fn scan_job_names(link: &mut Link) -> Result<Vec<String>> {
    let mut keys = link.scan(META_KEY_PATTERN)?;
    keys.sort();
    let names: Vec<String> = keys
        .iter()
        .filter_map(|k| job_of_meta_key(k))
        .map(str::to_string)
        .collect();
    for chunk in names.chunks(500) {
        register_jobs(link, crate::Now::Coordinator, chunk, true)?;
    }
    Ok(names)
}

/// Adds `names` to the register of jobs (`add`), or removes them.
pub fn register_jobs(link: &mut Link, now: crate::Now, names: &[String], add: bool) -> Result<u64> {
    if names.is_empty() {
        return Ok(0);
    }
    let mut cmd = redis::cmd("FCALL");
    cmd.arg("rc_jobs")
        .arg(1)
        .arg(JOBS_KEY)
        .arg(now.arg())
        .arg(if add { "add" } else { "rm" })
        .arg(names);
    link.query_at("rc_jobs", JOBS_KEY, &cmd)
}

/// A fault or operator event noted in the job.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobEvent {
    /// When it happened (ms).
    pub at_ms: u64,
    /// What happened (`kill-worker`, `straggler`, ...).
    pub kind: String,
    /// Which worker or node, and how.
    pub detail: String,
}

/// A task that was given up, with the reason.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadTask {
    /// The task's id.
    pub task: String,
    /// Its input file.
    pub path: String,
    /// First byte of its range.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Deliveries it had.
    pub attempts: u64,
    /// The worker that gave it up.
    pub worker: String,
    /// Why.
    pub error: String,
}

/// One committed task, as recorded in the `done` stream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DoneRecord {
    /// The task's id.
    pub task: String,
    /// Its input file.
    pub path: String,
    /// First byte of its range.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// When it was enqueued (ms, the coordinator's clock).
    pub injected_ms: u64,
    /// When it was due to arrive (a stream's schedule; else when it was enqueued).
    pub due_ms: u64,
    /// When the committing worker claimed it (ms).
    pub claimed_ms: u64,
    /// When it was committed (ms).
    pub committed_ms: u64,
    /// The committing worker.
    pub worker: String,
    /// Deliveries it took.
    pub attempts: u64,
    /// Words it had.
    pub words: u64,
    /// Its bytes, the small files packed with it included.
    pub bytes: u64,
}

/// A worker as its job knows it: when it was last heard from, and what it holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkerView {
    /// The worker's name.
    pub name: String,
    /// When it was last heard from (ms, the coordinator's clock).
    pub heard_ms: u64,
    /// The tasks it holds leases on.
    pub holds: Vec<HeldTask>,
}

/// A task a worker holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HeldTask {
    /// The task's id.
    pub task: String,
    /// Deliveries so far, this one included.
    pub attempts: u64,
    /// When this holder claimed it (ms, the coordinator's clock).
    pub claimed_ms: u64,
    /// Time its lease has left (ms; negative: expired, to be released at the next claim).
    pub lease_left_ms: i64,
    /// Its first input (escaped as [`crate::escape_bytes`]); empty when not read (a task split
    /// off another, or past the first [`SHOWN_HOLDS`]).
    pub input: String,
    /// Its inputs: the first and those packed with it (0 when not read).
    pub files: u64,
}

/// Held tasks whose inputs [`Job::workers`] reads (one pipelined `XRANGE` each): enough to show
/// what every worker is on, bounded however many leases there are.
pub const SHOWN_HOLDS: usize = 256;

/// One inflight record, `attempts:charged:solo:claimed_ms:lease_claimed:holder` (library/leases.lua,
/// `inflight`): (attempts, claimed_ms, holder). None for a previous-holder entry or a bad value.
fn parse_inflight(value: &str) -> Option<(u64, u64, &str)> {
    let mut parts = value.splitn(6, ':');
    let attempts = parts.next()?.parse().ok()?;
    let _charged = parts.next()?;
    let _solo = parts.next()?;
    let claimed = parts.next()?.parse().ok()?;
    let _lease_claimed = parts.next()?;
    Some((attempts, claimed, parts.next()?))
}

/// When a task or its commit record says it was due: its `due_ms`, or (records from before due
/// times, and batch tasks) when it was enqueued.
fn due_ms(f: &[(String, Vec<u8>)]) -> u64 {
    let injected = field(f, "injected_ms").parse().unwrap_or(0);
    field(f, "due_ms").parse().unwrap_or(injected)
}

impl DoneRecord {
    fn from_fields(f: &[(String, Vec<u8>)]) -> DoneRecord {
        let num = |name: &str| field(f, name).parse().unwrap_or(0);
        DoneRecord {
            task: field(f, "task"),
            path: field(f, "path"),
            start: num("start"),
            end: num("end"),
            injected_ms: num("injected_ms"),
            due_ms: due_ms(f),
            claimed_ms: num("claimed_ms"),
            committed_ms: num("committed_ms"),
            worker: field(f, "worker"),
            attempts: num("attempts"),
            words: num("words"),
            // Records written before v24 have no bytes: the task's own range.
            bytes: field(f, "bytes")
                .parse()
                .unwrap_or_else(|_| num("end").saturating_sub(num("start"))),
        }
    }
}

/// The n of a stream id `n-0`: a task's seq, or a `done`/`dead`/`events` record's number (`or` when
/// it is not one).
pub fn id_number(id: &str, or: u64) -> u64 {
    id.split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(or)
}

/// A stream entry as XREAD/XRANGE reply it: id and field/value pairs, values as bytes (a path need
/// not be UTF-8).
type StreamEntry = (String, Fields);

/// One stream's entries as XREAD replies them: its key and its entries.
type StreamEntries = (String, Vec<StreamEntry>);

/// A record's field/value pairs.
type Fields = Vec<(String, Vec<u8>)>;

/// A field's value as text: escaped where it is not UTF-8 (see [`crate::escape_bytes`]).
fn field(fields: &[(String, Vec<u8>)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| crate::escape_bytes(v))
        .unwrap_or_default()
}

impl Job {
    /// Every event, oldest first.
    pub fn events(&mut self) -> Result<Vec<JobEvent>> {
        let key = self.keys.events.clone();
        Ok(self
            .stream_records(&key)?
            .into_iter()
            .map(|f| JobEvent {
                at_ms: field(&f, "at_ms").parse().unwrap_or(0),
                kind: field(&f, "kind"),
                detail: field(&f, "detail"),
            })
            .collect())
    }

    /// One blocking `XREAD` (read-only) over `streams` given as (key, last id seen), and over the
    /// job's `end` stream from `0-0`, so that every wait ends when the job does (at once when it
    /// already has). Returns the entries of `streams`, and whether the job has ended.
    fn read_blocking(
        &mut self,
        streams: &[(&str, &str)],
        count: usize,
        timeout: Duration,
    ) -> Result<(Vec<StreamEntries>, bool)> {
        let end = self.keys.end();
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(timeout.as_millis().max(1) as u64)
            .arg("STREAMS");
        for (key, _) in streams {
            cmd.arg(*key);
        }
        cmd.arg(&end);
        for (_, id) in streams {
            cmd.arg(*id);
        }
        cmd.arg("0-0");
        let reply: Option<Vec<StreamEntries>> = self.read(&cmd)?;
        let (ended, entries): (Vec<_>, Vec<_>) = reply
            .unwrap_or_default()
            .into_iter()
            .partition(|(stream, _)| *stream == end);
        Ok((entries, !ended.is_empty()))
    }

    /// Blocks up to `timeout` until a task is added after `task_id`, a commit after `done_id`, or
    /// the job ends. Read-only, so it is a safe wake-up signal on replicas too; the caller
    /// re-checks with `claim`.
    pub fn wait_for_change(
        &mut self,
        task_id: &str,
        done_id: &str,
        timeout: Duration,
    ) -> Result<()> {
        let (tasks, done) = (self.keys.tasks.clone(), self.keys.done.clone());
        self.read_blocking(&[(&tasks, task_id), (&done, done_id)], 1, timeout)
            .map(|_| ())
    }

    /// Blocks up to `timeout` for commit records after record `after` (ids are `n-0`; records the
    /// job's history no longer holds are skipped) or for the job's end, and returns each record as
    /// (n, record), in order, and whether the job has ended: the driver's wake-up, and its record
    /// of what was committed when.
    pub fn commits_after(
        &mut self,
        after: u64,
        timeout: Duration,
    ) -> Result<(Vec<(u64, DoneRecord)>, bool)> {
        let key = self.keys.done.clone();
        let (entries, ended) =
            self.read_blocking(&[(&key, &format!("{after}-0"))], 1000, timeout)?;
        let records = entries
            .into_iter()
            .flat_map(|(_, entries)| entries)
            .map(|(id, fields)| (id_number(&id, after), DoneRecord::from_fields(&fields)))
            .collect();
        Ok((records, ended))
    }

    /// Checks that a finished job's result holds every word its commits counted (`words`, the
    /// status's): each partition a merge wrote still has its result and top, and the words the
    /// merges recorded add up to `words`. Anything else means a key was lost (evicted, deleted by
    /// another client) after it was last used: the job is marked failed, naming it, and the error
    /// says so; never a short result read as if it were whole.
    pub fn check_result(&mut self, now: impl Into<crate::Now>, words: u64) -> Result<()> {
        let (Aggregation::Workers, partitions) = self.layout()? else {
            return Ok(());
        };
        let merge = format!("{}merge", self.keys.meta.trim_end_matches("meta"));
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(&merge);
        for p in 0..partitions {
            hmget.arg(format!("gen:{p}")).arg(format!("words:{p}"));
        }
        let mut cmds = vec![hmget];
        for p in 0..partitions {
            for key in [self.keys.result(p), self.keys.top(p)] {
                let mut exists = redis::cmd("EXISTS");
                exists.arg(key);
                cmds.push(exists);
            }
        }
        debug_assert!(crate::is_read("HMGET") && crate::is_read("EXISTS"));
        let mut replies = self.pipeline("check result", &cmds)?.into_iter();
        let fields: Vec<Option<u64>> = replies
            .next()
            .and_then(|v| redis::FromRedisValue::from_redis_value(v).ok())
            .ok_or_else(|| self.bad_reply("HMGET merge", "not an array of numbers"))?;
        let exists: Vec<bool> = replies.map(|v| crate::reply::int(&v) == Some(1)).collect();
        let mut merged_words = 0u64;
        for p in 0..partitions {
            let (gen, part_words) = (
                fields.get(2 * p as usize).copied().flatten().unwrap_or(0),
                fields
                    .get(2 * p as usize + 1)
                    .copied()
                    .flatten()
                    .unwrap_or(0),
            );
            merged_words += part_words;
            for (i, key) in [self.keys.result(p), self.keys.top(p)].iter().enumerate() {
                if gen > 0 && !exists.get(2 * p as usize + i).copied().unwrap_or(false) {
                    let reason = format!(
                        "{key} vanished after the job counted it: Redis evicted it \
                         (maxmemory-policy is not noeviction?) or another client deleted it; \
                         the counts cannot be exact, run the job again"
                    );
                    return Err(self.fail_job(now.into(), &reason));
                }
            }
        }
        if merged_words != words {
            let reason = format!(
                "the merged counts hold {merged_words} words but the commits counted {words}: \
                 partial counts were lost before they were merged (evicted, or deleted by another \
                 client); run the job again"
            );
            return Err(self.fail_job(now.into(), &reason));
        }
        Ok(())
    }

    /// The `k` most frequent words, ties broken by the word's bytes ascending (of the merged result,
    /// while a job runs).
    pub fn top(&mut self, k: usize) -> Result<Vec<(Vec<u8>, u64)>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        if let (Aggregation::Workers, partitions) = self.layout()? {
            if k <= TOP_PER_PARTITION {
                return self.top_from_partitions(partitions, k);
            }
            let mut all = self.counts_from_partitions(partitions)?;
            all.truncate(k);
            return Ok(all);
        }
        self.zincrby_top(k)
    }

    /// Every word and its count, sorted by count descending then word bytes ascending.
    pub fn all_counts(&mut self) -> Result<Vec<(Vec<u8>, u64)>> {
        if let (Aggregation::Workers, partitions) = self.layout()? {
            return self.counts_from_partitions(partitions);
        }
        self.zincrby_counts()
    }

    /// The tasks that were given up, oldest first.
    pub fn dead_tasks(&mut self) -> Result<Vec<DeadTask>> {
        self.dead_tasks_first(usize::MAX)
    }

    /// The first `max` tasks that were given up, oldest first.
    pub fn dead_tasks_first(&mut self, max: usize) -> Result<Vec<DeadTask>> {
        let key = self.keys.dead.clone();
        Ok(self
            .stream_records_upto(&key, max)?
            .into_iter()
            .map(|f| DeadTask {
                task: field(&f, "task"),
                path: field(&f, "path"),
                start: field(&f, "start").parse().unwrap_or(0),
                end: field(&f, "end").parse().unwrap_or(0),
                attempts: field(&f, "attempts").parse().unwrap_or(0),
                worker: field(&f, "worker"),
                error: field(&f, "error"),
            })
            .collect())
    }

    /// Every commit record, in commit order.
    pub fn done_records(&mut self) -> Result<Vec<DoneRecord>> {
        let key = self.keys.done.clone();
        Ok(self
            .stream_records(&key)?
            .iter()
            .map(|f| DoneRecord::from_fields(f))
            .collect())
    }

    /// Up to `max` commit records after the first `after` (their ids are `n-0`), as (n, record):
    /// how a reader that follows a job picks up only what is new.
    pub fn done_records_after(&mut self, after: u64, max: usize) -> Result<Vec<(u64, DoneRecord)>> {
        let key = self.keys.done.clone();
        let page: Vec<StreamEntry> = self.read(
            redis::cmd("XRANGE")
                .arg(&key)
                .arg(format!("({after}-0"))
                .arg("+")
                .arg("COUNT")
                .arg(max.max(1)),
        )?;
        Ok(page
            .into_iter()
            .map(|(id, fields)| (id_number(&id, after), DoneRecord::from_fields(&fields)))
            .collect())
    }

    /// When the oldest task not yet delivered was due (ms, the coordinator's clock), if one waits.
    /// Tasks are delivered in order of their seq (1..n), so it is task `delivered + 1`.
    pub fn oldest_waiting_due_ms(&mut self, delivered: u64) -> Result<Option<u64>> {
        let key = self.keys.tasks.clone();
        let id = format!("{}-0", delivered + 1);
        let found: Vec<StreamEntry> =
            self.read(redis::cmd("XRANGE").arg(&key).arg(&id).arg(&id))?;
        Ok(found.first().map(|(_, f)| due_ms(f)))
    }

    /// The workers heard from, most recent first, with the tasks each holds and the time their
    /// leases have left at `now_ms` (the coordinator's clock, as `status` reports it).
    pub fn workers(&mut self, now_ms: u64) -> Result<Vec<WorkerView>> {
        let (workers, inflight, leases, meta) = (
            self.keys.workers.clone(),
            self.keys.inflight.clone(),
            self.keys.leases.clone(),
            self.keys.meta.clone(),
        );
        let heard: Vec<(String, f64)> = self.read(
            redis::cmd("ZREVRANGE")
                .arg(&workers)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES"),
        )?;
        let held: Vec<(String, String)> = self.read(redis::cmd("HGETALL").arg(&inflight))?;
        let deadlines: Vec<(String, f64)> = self.read(
            redis::cmd("ZRANGE")
                .arg(&leases)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES"),
        )?;
        let paused: Option<u64> = self.read(redis::cmd("HGET").arg(&meta).arg("paused_ms"))?;
        // Lease deadlines are on the lease clock (library/leases.lua, `lease_clock`): now minus the pauses.
        let lease_now = now_ms.saturating_sub(paused.unwrap_or(0)) as i64;
        let deadline: std::collections::HashMap<&str, i64> = deadlines
            .iter()
            .map(|(id, at)| (id.as_str(), *at as i64))
            .collect();
        let mut views: Vec<WorkerView> = heard
            .into_iter()
            .map(|(name, at)| WorkerView {
                name,
                heard_ms: at as u64,
                holds: Vec::new(),
            })
            .collect();
        for (task, value) in &held {
            let Some((attempts, claimed_ms, holder)) = parse_inflight(value) else {
                continue;
            };
            let Some(&at) = deadline.get(task.as_str()) else {
                continue;
            };
            if let Some(view) = views.iter_mut().find(|v| v.name == holder) {
                view.holds.push(HeldTask {
                    task: task.clone(),
                    attempts,
                    claimed_ms,
                    lease_left_ms: at - lease_now,
                    input: String::new(),
                    files: 0,
                });
            }
        }
        for view in &mut views {
            view.holds.sort_by(|a, b| a.task.cmp(&b.task));
        }
        // What each held task is reading: its first input and how many are packed with it.
        let shown: Vec<String> = views
            .iter()
            .flat_map(|v| v.holds.iter().map(|h| h.task.clone()))
            .filter(|id| !id.contains('.'))
            .take(SHOWN_HOLDS)
            .collect();
        let reads: Vec<redis::Cmd> = shown
            .iter()
            .map(|id| {
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(&self.keys.tasks).arg(id).arg(id);
                cmd
            })
            .collect();
        let entries = self.pipeline("XRANGE held tasks", &reads)?;
        let mut inputs: std::collections::HashMap<String, (String, u64)> = Default::default();
        for (id, value) in shown.into_iter().zip(entries) {
            let found: Vec<StreamEntry> = redis::FromRedisValue::from_redis_value(value)
                .map_err(|e| self.bad_reply("XRANGE held tasks", e.to_string()))?;
            if let Some((_, fields)) = found.first() {
                let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
                let path = field("path")
                    .map(|p| crate::escape_bytes(p))
                    .unwrap_or_default();
                // Each packed range is five NUL-terminated values (library/lifecycle.lua, `enqueue`).
                let more = field("more").map_or(0, |m| m.iter().filter(|b| **b == 0).count() / 5);
                inputs.insert(id, (path, 1 + more as u64));
            }
        }
        for hold in views.iter_mut().flat_map(|v| v.holds.iter_mut()) {
            if let Some((path, files)) = inputs.remove(&hold.task) {
                (hold.input, hold.files) = (path, files);
            }
        }
        Ok(views)
    }

    pub(crate) fn stream_records(&mut self, key: &str) -> Result<Vec<Fields>> {
        self.stream_records_upto(key, usize::MAX)
    }

    /// The first `max` records of stream `key`, in pages of at most 10,000 (each a short read).
    fn stream_records_upto(&mut self, key: &str, max: usize) -> Result<Vec<Fields>> {
        const PAGE: usize = 10_000;
        let mut out = Vec::new();
        let mut from = "-".to_string();
        while out.len() < max {
            let want = PAGE.min(max - out.len());
            let page: Vec<StreamEntry> = self.read(
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg(&from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(want),
            )?;
            let short = page.len() < want;
            if let Some((last, _)) = page.last() {
                from = format!("({last}");
            }
            out.extend(page.into_iter().map(|(_, fields)| fields));
            if short {
                break;
            }
        }
        Ok(out)
    }
}
