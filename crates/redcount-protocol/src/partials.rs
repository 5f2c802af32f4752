//! The `workers` aggregation: commits that store partial counts as blobs, one per partition, and
//! merges that workers claim with a lease and commit atomically (library/partials.lua: `rc_commit_parts`,
//! `rc_stage`, `rc_merge_claim`, `rc_merge_commit`). Large blobs travel in bounded pieces, staged under
//! a token and made visible by the short call that commits them, so no call carries or copies more
//! than [`STAGE_PIECE`] of them at once.

use std::time::Duration;

use redcount_count::partial;
use redis::Value;

use crate::spec::millis;
use crate::{reply, CommitOutcome, Job, Now, Result};

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
        let items = self.durable_commit(|job| {
            job.call_staged("rc_commit_parts", now, worker, |job, token, args| {
                args.push(arg(tasks.len()));
                for (id, words) in tasks {
                    args.push(id.as_bytes().to_vec());
                    args.push(arg(*words));
                }
                for (p, blob) in blobs {
                    job.push_blob(args, now, worker, token, *p, blob)?;
                }
                Ok(())
            })
        })?;
        self.commit_outcome("rc_commit_parts", &items)
    }

    /// [`Job::commit_parts`], then a claim of the next batch in the same round trip (one pipeline of
    /// the two calls), so a worker far from Redis does not wait a round trip for each: returns the
    /// commit's outcome and the claim's reply. Only when the commit needs nothing else: with a
    /// blob to stage or `--sync-replicas`, the commit goes alone, as before, and the claim is None.
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
        let token = self.next_token();
        let mut args = vec![now.arg(), worker.as_bytes().to_vec(), token.into_bytes()];
        args.push(arg(tasks.len()));
        for (id, words) in tasks {
            args.push(id.as_bytes().to_vec());
            args.push(arg(*words));
        }
        for (p, blob) in blobs {
            args.extend([arg(p), b"i".to_vec(), blob.clone()]);
        }
        let claim_args = self.claim_args(now, next);
        let commit = self.fcall_cmd("rc_commit_parts", &args);
        let claim = self.fcall_cmd("rc_claim", &claim_args);
        let mut replies = self
            .pipeline("rc_commit_parts", &[commit, claim])?
            .into_iter();
        let (Some(committed), Some(claimed)) = (replies.next(), replies.next()) else {
            return Err(self.bad_reply("rc_commit_parts", "a pipeline of two answered fewer"));
        };
        let committed = reply::array(committed)
            .ok_or_else(|| self.bad_reply("rc_commit_parts", "not an array"))?;
        let claimed =
            reply::array(claimed).ok_or_else(|| self.bad_reply("rc_claim", "not an array"))?;
        Ok((
            self.commit_outcome("rc_commit_parts", &committed)?,
            Some(self.parse_claim(&claimed)?),
        ))
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
        let args = vec![
            now.into().arg(),
            worker.as_bytes().to_vec(),
            arg(millis(lease)),
            arg(policy.min_parts),
            arg(policy.min_age.as_millis()),
            arg(policy.max_parts.max(1)),
            arg(max.max(1)),
        ];
        let items = self.array("rc_merge_claim", args)?;
        let bad = |detail: String| self.bad_reply("rc_merge_claim", detail);
        items
            .into_iter()
            .map(|claim| {
                let fields =
                    reply::array(claim).ok_or_else(|| bad("a claim not an array".into()))?;
                let partition = fields.first().and_then(reply::uint);
                let gen = fields.get(1).and_then(reply::uint);
                match (partition.and_then(|p| u32::try_from(p).ok()), gen) {
                    (Some(partition), Some(gen)) => Ok(MergeClaim {
                        partition,
                        gen,
                        seqs: fields[2..].iter().filter_map(reply::string).collect(),
                    }),
                    _ => Err(bad(format!("{fields:?}"))),
                }
            })
            .collect()
    }

    /// The partition's current result and the claimed partials; None when one of them is gone:
    /// another merge took the partition over after this worker's lease ran out (the merge is stale),
    /// or the key was lost, which the library finds when it next hands out or commits a merge.
    pub fn merge_inputs(&mut self, claim: &MergeClaim) -> Result<Option<MergeInputs>> {
        let blobs: Vec<Option<Vec<u8>>> = self.read(&self.merge_inputs_cmd(claim))?;
        self.split_merge_inputs(claim, blobs)
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

    /// Commits a merge: `result` (with `distinct` words, `words` with repetitions) and its `top`
    /// replace the partition's result and exactly the claimed partials. False when it was stale
    /// (another merge came first).
    #[allow(clippy::too_many_arguments)]
    pub fn merge_commit(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        claim: &MergeClaim,
        result: &[u8],
        distinct: u64,
        words: u64,
        top: &[u8],
    ) -> Result<bool> {
        let now = now.into();
        let items = self.call_staged("rc_merge_commit", now, worker, |job, token, args| {
            args.extend(merge_head(claim, distinct, words));
            job.push_blob(args, now, worker, token, claim.partition, result)?;
            args.extend([arg(claim.partition), b"i".to_vec(), top.to_vec()]);
            Ok(())
        })?;
        match items.first().and_then(reply::string).as_deref() {
            Some("ok") => Ok(true),
            Some("stale") => Ok(false),
            _ => Err(self.bad_reply("rc_merge_commit", format!("{items:?}"))),
        }
    }

    /// Merges a claimed partition as every merger does: its result and partials read in one `MGET`,
    /// folded in one pass per blob, its top-K picked, the whole committed. False when it was stale.
    pub fn merge_claimed(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        claim: &MergeClaim,
    ) -> Result<bool> {
        let now = now.into();
        let Some(inputs) = self.merge_inputs(claim)? else {
            return Ok(false);
        };
        let merged = self.merge_locally(now, claim, inputs)?;
        self.merge_commit(
            now,
            worker,
            claim,
            &merged.blob,
            merged.distinct,
            merged.words,
            &merged.top,
        )
    }

    /// A partition's result and partials folded into one blob, in one pass per blob. A blob that
    /// does not parse was written by someone else (every blob redcount stores is checked to be
    /// whole when it is committed): merged, it would spoil the result, so the job fails naming it.
    fn merge_locally(
        &mut self,
        now: Now,
        claim: &MergeClaim,
        (result, parts): MergeInputs,
    ) -> Result<Merged> {
        let mut inputs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        inputs.push(&result);
        let merged = partial::merge(&inputs).and_then(|(blob, distinct)| {
            let (top, words) = partial::top_and_words(&blob, TOP_PER_PARTITION)?;
            Ok((blob, distinct, top, words))
        });
        let (blob, distinct, top, words) = match merged {
            Ok(merged) => merged,
            Err(err) => {
                let keys: Vec<String> = claim
                    .seqs
                    .iter()
                    .map(|seq| self.keys.part(claim.partition, seq))
                    .chain(std::iter::once(self.keys.result(claim.partition)))
                    .collect();
                let culprit = keys
                    .iter()
                    .zip(&inputs)
                    .find(|(_, blob)| partial::for_each(blob, |_, _| {}).is_err())
                    .map(|(key, _)| key.clone())
                    .unwrap_or_else(|| format!("partition {}", claim.partition));
                let reason = format!(
                    "{culprit} holds bytes that are not redcount's partial counts ({err}): \
                     another client wrote it; the counts cannot be exact, run the job again"
                );
                return Err(self.fail_job(now, &reason));
            }
        };
        Ok(Merged {
            blob,
            distinct,
            words,
            top,
        })
    }

    /// Merges up to `max` due partitions in three round trips however many they are, where one at a
    /// time took three each (a worker on another host waits a round trip for every call): their
    /// claims in one call, their inputs in one pipeline of `MGET`s, then the commits of those whose
    /// result fits inline in one pipeline (each merge is still its own short call); a result that
    /// must be staged is committed alone, as [`Job::merge_claimed`] does. Returns (merges
    /// committed, merges found stale).
    pub fn merge_due(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        lease: Duration,
        policy: &MergePolicy,
        max: u32,
    ) -> Result<(u64, u64)> {
        let now = now.into();
        let claims = self.merge_claim_many(now, worker, lease, policy, max)?;
        let reads: Vec<redis::Cmd> = claims.iter().map(|c| self.merge_inputs_cmd(c)).collect();
        debug_assert!(crate::is_read("MGET"));
        let mut merged = Vec::with_capacity(claims.len());
        for (claim, value) in claims.iter().zip(self.pipeline("MGET partials", &reads)?) {
            let blobs: Vec<Option<Vec<u8>>> = redis::FromRedisValue::from_redis_value(value)
                .map_err(|e| self.bad_reply("MGET partials", e.to_string()))?;
            merged.push(match self.split_merge_inputs(claim, blobs)? {
                Some(inputs) => Some(self.merge_locally(now, claim, inputs)?),
                None => None,
            });
        }
        let (mut committed, mut stale) = (0, 0);
        let mut count = |ok: bool| {
            if ok {
                committed += 1
            } else {
                stale += 1
            }
        };
        let mut commits = Vec::new();
        for (claim, m) in claims.iter().zip(&merged) {
            let Some(m) = m else {
                count(false);
                continue;
            };
            if m.blob.len() > INLINE_BLOB {
                count(self.merge_commit(now, worker, claim, &m.blob, m.distinct, m.words, &m.top)?);
                continue;
            }
            // Inline blobs take no token; one per call keeps them apart all the same.
            let token = self.next_token();
            let mut args = vec![now.arg(), worker.as_bytes().to_vec(), token.into_bytes()];
            args.extend(merge_commit_args(claim, m));
            commits.push(self.fcall_cmd("rc_merge_commit", &args));
        }
        let replies = self.pipeline("rc_merge_commit", &commits)?;
        for value in replies {
            let items = reply::array(value).unwrap_or_default();
            match items.first().and_then(reply::string).as_deref() {
                Some("ok") => count(true),
                Some("stale") => count(false),
                _ => return Err(self.bad_reply("rc_merge_commit", format!("{items:?}"))),
            }
        }
        Ok((committed, stale))
    }

    /// Calls `func` (a commit or merge that may carry staged blobs) with `now, worker, token` and the
    /// arguments `fill` adds, staging any large blob under a fresh token; again, with new pieces, when
    /// the reply is `restage` (Redis lost the staged pieces: a restart).
    fn call_staged(
        &mut self,
        func: &'static str,
        now: Now,
        worker: &str,
        mut fill: impl FnMut(&mut Job, &str, &mut Vec<Vec<u8>>) -> Result<()>,
    ) -> Result<Vec<Value>> {
        for _ in 0..RESTAGE_TRIES {
            let token = self.next_token();
            let mut args = vec![
                now.arg(),
                worker.as_bytes().to_vec(),
                token.clone().into_bytes(),
            ];
            fill(self, &token, &mut args)?;
            let items = self.array(func, args)?;
            if items.first().and_then(reply::string).as_deref() != Some("restage") {
                return Ok(items);
            }
            tracing::warn!(
                "{worker}: staged blobs of {func} were lost (redis restarted?); staging again"
            );
        }
        Err(self.bad_reply(func, "the staged blobs kept vanishing"))
    }

    /// Appends `(p, i|s, bytes)` for a blob: inline when small, else staged in pieces first.
    fn push_blob(
        &mut self,
        args: &mut Vec<Vec<u8>>,
        now: Now,
        worker: &str,
        token: &str,
        p: u32,
        blob: &[u8],
    ) -> Result<()> {
        args.push(arg(p));
        if blob.len() <= INLINE_BLOB {
            args.push(b"i".to_vec());
            args.push(blob.to_vec());
            return Ok(());
        }
        // Each piece names where it goes, so a retried piece is not appended twice and the first
        // replaces anything left under the key; -1: the staged blob does not end where this piece
        // starts (Redis lost it), so it is staged again from the start.
        'again: for _ in 0..RESTAGE_TRIES {
            for (i, piece) in blob.chunks(STAGE_PIECE).enumerate() {
                let stage = vec![
                    now.arg(),
                    worker.as_bytes().to_vec(),
                    token.as_bytes().to_vec(),
                    arg(p),
                    arg(i * STAGE_PIECE),
                    piece.to_vec(),
                ];
                if reply::int(&self.fcall("rc_stage", stage)?) == Some(-1) {
                    tracing::warn!(
                        "{worker}: a staged blob was lost (redis restarted?); staging it again"
                    );
                    continue 'again;
                }
            }
            // The commit checks the staged blob has exactly this length.
            args.push(b"s".to_vec());
            args.push(arg(blob.len()));
            return Ok(());
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

fn arg(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// A partition's result (empty before its first merge) and the partials a merge folds into it.
pub type MergeInputs = (Vec<u8>, Vec<Vec<u8>>);

/// A partition merged in memory, ready to commit.
struct Merged {
    blob: Vec<u8>,
    distinct: u64,
    words: u64,
    top: Vec<u8>,
}

/// `p, gen, distinct, words, n, seq * n` of a merge commit.
fn merge_head(claim: &MergeClaim, distinct: u64, words: u64) -> Vec<Vec<u8>> {
    let mut args = vec![
        arg(claim.partition),
        arg(claim.gen),
        arg(distinct),
        arg(words),
        arg(claim.seqs.len()),
    ];
    args.extend(claim.seqs.iter().map(|s| s.as_bytes().to_vec()));
    args
}

/// A merge commit's arguments after `now, worker, token`, its result inline.
fn merge_commit_args(claim: &MergeClaim, merged: &Merged) -> Vec<Vec<u8>> {
    let mut args = merge_head(claim, merged.distinct, merged.words);
    args.extend([arg(claim.partition), b"i".to_vec(), merged.blob.clone()]);
    args.extend([arg(claim.partition), b"i".to_vec(), merged.top.clone()]);
    args
}
