//! `rc_commit` (library/commit.lua): the `--aggregate-in redis` commit, a batch's words added to
//! the result with ZINCRBY, exactly once per task; and how every commit's reply reads.

use std::collections::BTreeMap;

use redis::Value;

use super::{arg, items, verdict, Call};
use crate::{reply, Now};

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

/// `rc_commit`: tasks `(id, words)` and their merged counts, grouped by count.
pub struct Commit<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The committing worker.
    pub worker: &'a str,
    /// The tasks and the words each held.
    pub tasks: &'a [(String, u64)],
    /// The words by count (`count, k, word * k`: the library checks each count once).
    pub by_count: BTreeMap<u64, Vec<&'a [u8]>>,
}

impl<'a> Commit<'a> {
    /// The commit of `tasks` with their merged `counts`.
    pub fn new(
        now: Now,
        worker: &'a str,
        tasks: &'a [(String, u64)],
        counts: impl Iterator<Item = (&'a [u8], u64)>,
    ) -> Self {
        let mut by_count: BTreeMap<u64, Vec<&[u8]>> = BTreeMap::new();
        for (word, count) in counts {
            by_count.entry(count).or_default().push(word);
        }
        Commit {
            now,
            worker,
            tasks,
            by_count,
        }
    }
}

impl Call for Commit<'_> {
    const FUNCTION: &'static str = "rc_commit";
    type Reply = CommitOutcome;

    fn args(&self) -> Vec<Vec<u8>> {
        let words: usize = self.by_count.values().map(Vec::len).sum();
        let mut args =
            Vec::with_capacity(3 + self.tasks.len() * 2 + words + 2 * self.by_count.len());
        args.push(self.now.arg());
        args.push(self.worker.as_bytes().to_vec());
        args.push(arg(self.tasks.len()));
        for (id, words) in self.tasks {
            args.push(id.as_bytes().to_vec());
            args.push(arg(*words));
        }
        for (count, words) in &self.by_count {
            args.push(arg(count));
            args.push(arg(words.len()));
            args.extend(words.iter().map(|w| w.to_vec()));
        }
        args
    }

    fn reply(&self, value: Value) -> Result<CommitOutcome, String> {
        outcome(&items(value)?)
    }
}

/// What a commit's reply says (`rc_commit`, `rc_commit_parts`).
pub(crate) fn outcome(items: &[Value]) -> Result<CommitOutcome, String> {
    match verdict(items).as_str() {
        "ok" => Ok(CommitOutcome::Applied),
        "dup" => Ok(CommitOutcome::Duplicate),
        "partial" => Ok(CommitOutcome::Partial(
            items[1..].iter().filter_map(reply::string).collect(),
        )),
        _ => Err(format!("{items:?}")),
    }
}
