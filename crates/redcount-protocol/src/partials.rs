//! The `workers` aggregation: commits that store partial counts as blobs, one per partition, and
//! merges that workers claim with a lease, compute (redcount-worker's `merge.rs`) and commit
//! atomically (library/partials.lua: `rc_commit_parts`,
//! `rc_stage`, `rc_merge_claim`, `rc_merge_commit`). Large blobs travel in bounded pieces, staged under
//! a token and made visible by the short call that commits them, so no call carries or copies more
//! than [`STAGE_PIECE`] of them at once.

use std::time::Duration;

use crate::calls::partials::{Blob, ClaimMerges, CommitParts, MaybeRestage, MergeCommit, Stage};
use crate::calls::Call;
use crate::{CommitOutcome, Job, Now, Result};

/// Blobs up to this size travel inside the commit call; larger ones are staged first.
pub const INLINE_BLOB: usize = 256 << 10;
/// The most bytes of a blob one `rc_stage` call carries.
pub const STAGE_PIECE: usize = 512 << 10;
/// Entries of each partition's top-K blob: `top -k` up to this reads only those.
pub const TOP_PER_PARTITION: usize = 1000;

/// When a partition is due for a merge (what a worker asks of `rc_merge_claim`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePolicy {
    /// Merge a partition with this many partials waiting ...
    pub min_parts: u64,
    /// ... or whose oldest partial waited this long (the live result is about this far behind).
    pub min_age: Duration,
    /// Most partials merged at once (bounds a merging worker's memory).
    pub max_parts: u64,
}

impl Default for MergePolicy {
    fn default() -> MergePolicy {
        MergePolicy {
            min_parts: 16,
            min_age: Duration::from_millis(1000),
            max_parts: 64,
        }
    }
}

/// A partition leased to this worker for merging: its result's generation and the partials to fold in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeClaim {
    /// The partition.
    pub partition: u32,
    /// Generation of the result the merge starts from.
    pub gen: u64,
    /// The partials (their seqs) to merge, oldest first.
    pub seqs: Vec<String>,
}

/// How many times a commit is staged again when Redis lost its staged pieces (a restart).
const RESTAGE_TRIES: usize = 3;

impl Job {
    /// Commits tasks `(id, words)` exactly once with their counts as partition blobs `(p, blob)`.
    pub fn commit_parts(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        tasks: &[(String, u64)],
        blobs: &[(u32, Vec<u8>)],
    ) -> Result<CommitOutcome> {
        let now = now.into();
        let blobs: Vec<(u32, &[u8])> = blobs.iter().map(|(p, b)| (*p, b.as_slice())).collect();
        self.durable_commit(|job| {
            job.send_staged(now, worker, &blobs, |token, blobs| CommitParts {
                now,
                worker,
                token,
                tasks,
                blobs,
            })
        })
    }

    /// [`Job::commit_parts`] and the claim of the next batch sent together ([`Job::send_pair`]), so
    /// a worker far from Redis does not wait a round trip for each: returns the commit's outcome
    /// and the claim's reply. Only when the commit needs nothing else: with a blob to stage or
    /// `--sync-replicas`, the commit goes alone, as before, and the claim is None.
    pub fn commit_parts_and_claim(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        tasks: &[(String, u64)],
        blobs: &[(u32, Vec<u8>)],
        next: &crate::ClaimRequest,
    ) -> Result<(CommitOutcome, Option<crate::Claimed>)> {
        let now = now.into();
        if self.sync_replicas() > 0 || blobs.iter().any(|(_, b)| b.len() > INLINE_BLOB) {
            return Ok((self.commit_parts(now, worker, tasks, blobs)?, None));
        }
        let commit = CommitParts {
            now,
            worker,
            token: self.next_token(),
            tasks,
            blobs: blobs.iter().map(|(p, b)| (*p, Blob::Inline(b))).collect(),
        };
        let claim = self.claim_call(now, next);
        match self.send_pair(&commit, &claim)? {
            (MaybeRestage::Done(outcome), claimed) => Ok((outcome, Some(claimed))),
            (MaybeRestage::Restage, _) => Err(self.bad_reply(
                "rc_commit_parts",
                "restage for a commit with nothing staged",
            )),
        }
    }

    /// A partition due for merging, leased to `worker` for `lease`; None when none is due.
    pub fn merge_claim(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        lease: Duration,
        policy: &MergePolicy,
    ) -> Result<Option<MergeClaim>> {
        Ok(self
            .merge_claim_many(now, worker, lease, policy, 1)?
            .into_iter()
            .next())
    }

    /// Up to `max` partitions due for merging, leased to `worker` for `lease`, in one call.
    pub fn merge_claim_many(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        lease: Duration,
        policy: &MergePolicy,
        max: u32,
    ) -> Result<Vec<MergeClaim>> {
        self.send(&ClaimMerges {
            now: now.into(),
            worker,
            lease,
            policy,
            max,
        })
    }

    /// The partition's current result and the claimed partials; None when one of them is gone:
    /// another merge took the partition over after this worker's lease ran out (the merge is stale),
    /// or the key was lost, which the library finds when it next hands out or commits a merge.
    pub fn merge_inputs(&mut self, claim: &MergeClaim) -> Result<Option<MergeInputs>> {
        Ok(self
            .merge_inputs_many(std::slice::from_ref(claim))?
            .pop()
            .flatten())
    }

    /// [`Job::merge_inputs`] of several claims in one round trip (a pipeline of `MGET`s).
    pub fn merge_inputs_many(&mut self, claims: &[MergeClaim]) -> Result<Vec<Option<MergeInputs>>> {
        let reads: Vec<redis::Cmd> = claims.iter().map(|c| self.merge_inputs_cmd(c)).collect();
        debug_assert!(crate::is_read("MGET"));
        let mut inputs = Vec::with_capacity(claims.len());
        for (claim, value) in claims.iter().zip(self.pipeline("MGET partials", &reads)?) {
            let blobs: Vec<Option<Vec<u8>>> = redis::FromRedisValue::from_redis_value(value)
                .map_err(|e| self.bad_reply("MGET partials", e.to_string()))?;
            inputs.push(self.split_merge_inputs(claim, blobs)?);
        }
        Ok(inputs)
    }

    /// `MGET` of a claimed partition's result and partials.
    fn merge_inputs_cmd(&self, claim: &MergeClaim) -> redis::Cmd {
        let mut cmd = redis::cmd("MGET");
        cmd.arg(self.keys.result(claim.partition));
        for seq in &claim.seqs {
            cmd.arg(self.keys.part(claim.partition, seq));
        }
        cmd
    }

    fn split_merge_inputs(
        &self,
        claim: &MergeClaim,
        mut blobs: Vec<Option<Vec<u8>>>,
    ) -> Result<Option<MergeInputs>> {
        if blobs.len() != claim.seqs.len() + 1 {
            return Err(self.bad_reply("MGET partials", format!("{} blobs", blobs.len())));
        }
        // A partition no merge has written yet has no result: that one may be absent.
        let result = match blobs.remove(0) {
            Some(result) => result,
            None if claim.gen == 0 => Vec::new(),
            None => return Ok(None),
        };
        let parts: Option<Vec<Vec<u8>>> = blobs.into_iter().collect();
        Ok(parts.map(|parts| (result, parts)))
    }

    /// The keys of a claimed partition's partials and result, in the order of its inputs (the
    /// partials, then the result): to name the one a merge found spoilt.
    pub fn merge_input_keys(&self, claim: &MergeClaim) -> Vec<String> {
        claim
            .seqs
            .iter()
            .map(|seq| self.keys.part(claim.partition, seq))
            .chain(std::iter::once(self.keys.result(claim.partition)))
            .collect()
    }

    /// Commits a merge: `merged` replaces the partition's result and exactly the claimed
    /// partials. False when it was stale (another merge came first).
    pub fn merge_commit(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        claim: &MergeClaim,
        merged: &Merged,
    ) -> Result<bool> {
        let now = now.into();
        let result = [(claim.partition, merged.blob.as_slice())];
        self.send_staged(now, worker, &result, |token, mut blobs| MergeCommit {
            now,
            worker,
            token,
            claim,
            distinct: merged.distinct,
            words: merged.words,
            result: blobs.remove(0).1,
            top: &merged.top,
        })
    }

    /// Commits merges whose results go inline in one pipeline, one round trip (each merge is still
    /// its own short call); a result that must be staged is committed alone, as
    /// [`Job::merge_commit`] does. Returns, per merge, whether it was committed (false: stale).
    pub fn merge_commit_many(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        merges: &[(&MergeClaim, &Merged)],
    ) -> Result<Vec<bool>> {
        let now = now.into();
        let mut committed = vec![false; merges.len()];
        let mut inline = Vec::new();
        let mut calls = Vec::new();
        for (i, (claim, merged)) in merges.iter().enumerate() {
            if merged.blob.len() > INLINE_BLOB {
                committed[i] = self.merge_commit(now, worker, claim, merged)?;
                continue;
            }
            // Inline blobs take no token; one per call keeps them apart all the same.
            let call = MergeCommit {
                now,
                worker,
                token: self.next_token(),
                claim,
                distinct: merged.distinct,
                words: merged.words,
                result: Blob::Inline(&merged.blob),
                top: &merged.top,
            };
            inline.push(i);
            calls.push(call);
        }
        let cmds: Vec<redis::Cmd> = calls.iter().map(|c| self.command(c)).collect();
        let replies = self.pipeline("rc_merge_commit", &cmds)?;
        if replies.len() != calls.len() {
            return Err(self.bad_reply("rc_merge_commit", "a pipeline answered fewer"));
        }
        for ((i, call), value) in inline.into_iter().zip(&calls).zip(replies) {
            committed[i] = match call.reply(value) {
                Ok(MaybeRestage::Done(ok)) => ok,
                Ok(MaybeRestage::Restage) => {
                    return Err(self.bad_reply("rc_merge_commit", "restage with nothing staged"))
                }
                Err(detail) => return Err(self.bad_reply("rc_merge_commit", detail)),
            };
        }
        Ok(committed)
    }

    /// Sends a call that may carry large blobs: each of `blobs` over [`INLINE_BLOB`] is staged in
    /// pieces under a fresh token first, the call is made by `make(token, blobs as they travel)`,
    /// and all of it starts again with new pieces when the reply is `restage` (Redis lost the
    /// staged pieces: a restart).
    fn send_staged<'a, T, C>(
        &mut self,
        now: Now,
        worker: &str,
        blobs: &[(u32, &'a [u8])],
        make: impl Fn(String, Vec<(u32, Blob<'a>)>) -> C,
    ) -> Result<T>
    where
        C: Call<Reply = MaybeRestage<T>>,
    {
        for _ in 0..RESTAGE_TRIES {
            let token = self.next_token();
            let mut travel = Vec::with_capacity(blobs.len());
            for (p, blob) in blobs {
                travel.push((*p, self.stage(now, worker, &token, *p, blob)?));
            }
            if let MaybeRestage::Done(reply) = self.send(&make(token, travel))? {
                return Ok(reply);
            }
            tracing::warn!(
                "{worker}: staged blobs of {} were lost (redis restarted?); staging again",
                C::FUNCTION
            );
        }
        Err(self.bad_reply(C::FUNCTION, "the staged blobs kept vanishing"))
    }

    /// A blob as it travels: inline when small, else staged in pieces first.
    fn stage<'a>(
        &mut self,
        now: Now,
        worker: &str,
        token: &str,
        partition: u32,
        blob: &'a [u8],
    ) -> Result<Blob<'a>> {
        if blob.len() <= INLINE_BLOB {
            return Ok(Blob::Inline(blob));
        }
        // Each piece names where it goes, so a retried piece is not appended twice and the first
        // replaces anything left under the key; a piece refused means the staged blob does not
        // end where it starts (Redis lost it), so it is staged again from the start.
        'again: for _ in 0..RESTAGE_TRIES {
            for (i, piece) in blob.chunks(STAGE_PIECE).enumerate() {
                let stage = Stage {
                    now,
                    worker,
                    token,
                    partition,
                    offset: i * STAGE_PIECE,
                    piece,
                };
                if !self.send(&stage)? {
                    tracing::warn!(
                        "{worker}: a staged blob was lost (redis restarted?); staging it again"
                    );
                    continue 'again;
                }
            }
            // The call checks the staged blob has exactly this length.
            return Ok(Blob::Staged(blob.len()));
        }
        Err(self.bad_reply("rc_stage", "the staged blob kept vanishing"))
    }

    /// A token for staging, unique to this process's calls: a random prefix per handle, so that a
    /// worker restarted under the same name (or a second process sharing it) never writes to a key
    /// another life staged; then a counter.
    fn next_token(&mut self) -> String {
        self.stages += 1;
        format!("s{}-{}", self.instance, self.stages)
    }

    /// Every partition's top-K entries, merged: the top `k` words of the merged results.
    pub(crate) fn top_from_partitions(
        &mut self,
        partitions: u32,
        k: usize,
    ) -> Result<Vec<(Vec<u8>, u64)>> {
        let mut cmd = redis::cmd("MGET");
        for p in 0..partitions {
            cmd.arg(self.keys.top(p));
        }
        let blobs: Vec<Option<Vec<u8>>> = self.read(&cmd)?;
        let mut all = Vec::new();
        for blob in blobs.into_iter().flatten() {
            all.extend(self.decode(&blob)?);
        }
        redcount_count::partial::sort_by_count(&mut all);
        all.truncate(k);
        Ok(all)
    }

    /// Every word of the merged results, count descending then word.
    pub(crate) fn counts_from_partitions(
        &mut self,
        partitions: u32,
    ) -> Result<Vec<(Vec<u8>, u64)>> {
        // One GET per partition (each its own bounded command), all in one round trip.
        let gets: Vec<redis::Cmd> = (0..partitions)
            .map(|p| {
                let mut get = redis::cmd("GET");
                get.arg(self.keys.result(p));
                get
            })
            .collect();
        debug_assert!(crate::is_read("GET"));
        let mut all = Vec::new();
        for value in self.pipeline("GET result", &gets)? {
            let blob: Option<Vec<u8>> = redis::FromRedisValue::from_redis_value(value)
                .map_err(|e| self.bad_reply("GET result", e.to_string()))?;
            all.extend(self.decode(&blob.unwrap_or_default())?);
        }
        redcount_count::partial::sort_by_count(&mut all);
        Ok(all)
    }

    fn decode(&self, blob: &[u8]) -> Result<Vec<(Vec<u8>, u64)>> {
        redcount_count::partial::decode(blob)
            .map_err(|e| self.bad_reply("GET result", e.to_string()))
    }
}

/// A partition's result (empty before its first merge) and the partials a merge folds into it.
pub type MergeInputs = (Vec<u8>, Vec<Vec<u8>>);

/// A partition merged in memory (by the worker that claimed it), ready to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The new result blob.
    pub blob: Vec<u8>,
    /// Distinct words in it.
    pub distinct: u64,
    /// Words with repetitions in it.
    pub words: u64,
    /// Its top-K entries ([`TOP_PER_PARTITION`]), as a blob.
    pub top: Vec<u8>,
}
