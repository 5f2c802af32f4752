//! The `--aggregate-in redis` job (the course's design: every commit adds its words to one sorted
//! set with ZINCRBY), all of it on the Rust side: its commit and its two reads. The default
//! aggregation is partials.rs; the Lua side of this one is library/commit.lua and `rc_top`.

use crate::calls;
use crate::{CommitOutcome, Job, Now, Result};

impl Job {
    /// Commits tasks `(id, words)` with their merged `counts`, exactly once.
    pub fn commit<'a>(
        &mut self,
        now: impl Into<Now>,
        worker: &'a str,
        tasks: &'a [(String, u64)],
        counts: impl ExactSizeIterator<Item = (&'a [u8], u64)>,
    ) -> Result<CommitOutcome> {
        let commit = calls::commit::Commit::new(now.into(), worker, tasks, counts);
        self.durable_commit(|job| job.send(&commit))
    }

    /// The `k` most frequent words, in one call, one snapshot (see rc_top in library/reads.lua).
    pub(crate) fn zincrby_top(&mut self, k: usize) -> Result<Vec<(Vec<u8>, u64)>> {
        self.send(&calls::reads::Top { k })
    }

    /// Every word of the sorted set, read in pages, count descending then word bytes ascending.
    pub(crate) fn zincrby_counts(&mut self) -> Result<Vec<(Vec<u8>, u64)>> {
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
}
