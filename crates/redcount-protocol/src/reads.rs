//! Reading a job's results and records (for reports, `top`, `status`, latency): plain reads, outside
//! the library, since they change nothing.

use std::time::Duration;

use crate::keys::{job_of_meta_key, META_KEY_PATTERN};
use crate::partials::TOP_PER_PARTITION;
use crate::{Aggregation, Job, Link, Result};

/// The names of every job in the Redis behind `link`, sorted.
pub fn job_names(link: &mut Link) -> Result<Vec<String>> {
    let mut keys: Vec<String> = link.call("SCAN", |con| {
        let iter = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(META_KEY_PATTERN)
            .arg("COUNT")
            .arg(1000)
            .clone();
        iter.iter::<String>(con)
            .map(|it| it.filter_map(std::result::Result::ok).collect())
    })?;
    keys.sort();
    Ok(keys
        .iter()
        .filter_map(|k| job_of_meta_key(k))
        .map(str::to_string)
        .collect())
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
    /// When it was enqueued (ms).
    pub injected_ms: u64,
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
}

/// A stream entry as XREAD/XRANGE reply it: id and field/value pairs.
type StreamEntry = (String, Vec<(String, String)>);

fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
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

    /// One blocking `XREAD` (read-only) over `streams` given as (key, last id seen).
    fn read_blocking(
        &mut self,
        streams: &[(&str, &str)],
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<(String, Vec<StreamEntry>)>> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(timeout.as_millis().max(1) as u64)
            .arg("STREAMS");
        for (key, _) in streams {
            cmd.arg(*key);
        }
        for (_, id) in streams {
            cmd.arg(*id);
        }
        let reply: Option<Vec<(String, Vec<StreamEntry>)>> = self.read(&cmd)?;
        Ok(reply.unwrap_or_default())
    }

    /// Blocks up to `timeout` until a task is added after `task_id` or a commit after `done_id`.
    /// Read-only, so it is a safe wake-up signal on replicas too; the caller re-checks with `claim`.
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

    /// Blocks up to `timeout` for commit records after the first `done` ones (ids are `n-0`), and
    /// returns (task id, committed_ms) of each, in order: the driver's wake-up, and its record of what
    /// was committed when.
    pub fn commits_after(&mut self, done: u64, timeout: Duration) -> Result<Vec<(String, u64)>> {
        let key = self.keys.done.clone();
        let entries = self.read_blocking(&[(&key, &format!("{done}-0"))], 1000, timeout)?;
        Ok(entries
            .into_iter()
            .flat_map(|(_, entries)| entries)
            .map(|(_, fields)| {
                (
                    field(&fields, "task"),
                    field(&fields, "committed_ms").parse().unwrap_or(0),
                )
            })
            .collect())
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
        let counts = self.keys.counts.clone();
        let head: Vec<(Vec<u8>, f64)> = self.read(
            redis::cmd("ZREVRANGE")
                .arg(&counts)
                .arg(0)
                .arg(k - 1)
                .arg("WITHSCORES"),
        )?;
        let Some(&(_, cutoff)) = head.last() else {
            return Ok(Vec::new());
        };
        // ZREVRANGE orders ties by word descending; take everything above the cutoff score, then the
        // cutoff's tie group in ascending byte order (how ZRANGEBYSCORE orders equal scores).
        let mut top: Vec<(Vec<u8>, u64)> = head
            .into_iter()
            .filter(|(_, s)| *s > cutoff)
            .map(|(w, s)| (w, s as u64))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let missing = k - top.len();
        let ties: Vec<Vec<u8>> = self.read(
            redis::cmd("ZRANGEBYSCORE")
                .arg(&counts)
                .arg(cutoff)
                .arg(cutoff)
                .arg("LIMIT")
                .arg(0)
                .arg(missing),
        )?;
        top.extend(ties.into_iter().map(|w| (w, cutoff as u64)));
        Ok(top)
    }

    /// Every word and its count, sorted by count descending then word bytes ascending.
    pub fn all_counts(&mut self) -> Result<Vec<(Vec<u8>, u64)>> {
        if let (Aggregation::Workers, partitions) = self.layout()? {
            return self.counts_from_partitions(partitions);
        }
        const PAGE: usize = 50_000;
        let counts = self.keys.counts.clone();
        let mut all: Vec<(Vec<u8>, u64)> = Vec::new();
        loop {
            let from = all.len();
            let page: Vec<(Vec<u8>, f64)> = self.read(
                redis::cmd("ZRANGE")
                    .arg(&counts)
                    .arg(from)
                    .arg(from + PAGE - 1)
                    .arg("WITHSCORES"),
            )?;
            let short = page.len() < PAGE;
            all.extend(page.into_iter().map(|(w, s)| (w, s as u64)));
            if short {
                break;
            }
        }
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(all)
    }

    /// The tasks that were given up, oldest first.
    pub fn dead_tasks(&mut self) -> Result<Vec<DeadTask>> {
        let key = self.keys.dead.clone();
        Ok(self
            .stream_records(&key)?
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
        let num = |f: &[(String, String)], name: &str| field(f, name).parse().unwrap_or(0);
        Ok(self
            .stream_records(&key)?
            .into_iter()
            .map(|f| DoneRecord {
                task: field(&f, "task"),
                path: field(&f, "path"),
                start: num(&f, "start"),
                end: num(&f, "end"),
                injected_ms: num(&f, "injected_ms"),
                claimed_ms: num(&f, "claimed_ms"),
                committed_ms: num(&f, "committed_ms"),
                worker: field(&f, "worker"),
                attempts: num(&f, "attempts"),
                words: num(&f, "words"),
            })
            .collect())
    }

    pub(crate) fn stream_records(&mut self, key: &str) -> Result<Vec<Vec<(String, String)>>> {
        const PAGE: usize = 10_000;
        let mut out = Vec::new();
        let mut from = "-".to_string();
        loop {
            let page: Vec<StreamEntry> = self.read(
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg(&from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE),
            )?;
            let short = page.len() < PAGE;
            if let Some((last, _)) = page.last() {
                from = format!("({last}");
            }
            out.extend(page.into_iter().map(|(_, fields)| fields));
            if short {
                return Ok(out);
            }
        }
    }
}
