//! `rc_commit_parts`, `rc_stage`, `rc_merge_claim`, `rc_merge_commit` (library/partials.lua): the
//! default aggregation, partition blobs committed with a batch's tasks, then merged by workers
//! under a lease.

use std::time::Duration;

use redis::Value;

use super::{arg, items, verdict, Call};
use crate::calls::commit::CommitOutcome;
use crate::partials::{MergeClaim, MergePolicy};
use crate::spec::millis;
use crate::{reply, Now};

/// A blob as a call carries it.
#[derive(Debug, Clone, Copy)]
pub enum Blob<'a> {
    /// In the call itself (at most [`crate::INLINE_BLOB`] bytes).
    Inline(&'a [u8]),
    /// Staged before under the call's token ([`Stage`]); the call checks it has this length.
    Staged(usize),
}

impl Blob<'_> {
    /// `p, i, bytes` or `p, s, length`.
    fn push(self, partition: u32, args: &mut Vec<Vec<u8>>) {
        args.push(arg(partition));
        match self {
            Blob::Inline(bytes) => {
                args.push(b"i".to_vec());
                args.push(bytes.to_vec());
            }
            Blob::Staged(len) => {
                args.push(b"s".to_vec());
                args.push(arg(len));
            }
        }
    }
}

/// The reply of a call that may carry staged blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaybeRestage<T> {
    /// The call's own reply.
    Done(T),
    /// Redis lost the staged blobs (a restart): stage them again under a new token and call again.
    Restage,
}

/// Reads `restage`, or the call's own reply with `read`.
fn maybe_restage<T>(
    value: Value,
    read: impl FnOnce(&[Value]) -> Result<T, String>,
) -> Result<MaybeRestage<T>, String> {
    let items = items(value)?;
    if verdict(&items) == "restage" {
        return Ok(MaybeRestage::Restage);
    }
    read(&items).map(MaybeRestage::Done)
}

/// `rc_commit_parts`: tasks `(id, words)` exactly once, with their counts as partition blobs.
pub struct CommitParts<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The committing worker.
    pub worker: &'a str,
    /// Unique to this call: names its staged blobs.
    pub token: String,
    /// The tasks and the words each held.
    pub tasks: &'a [(String, u64)],
    /// Partition blobs: `(p, blob)`.
    pub blobs: Vec<(u32, Blob<'a>)>,
}

impl Call for CommitParts<'_> {
    const FUNCTION: &'static str = "rc_commit_parts";
    type Reply = MaybeRestage<CommitOutcome>;

    fn args(&self) -> Vec<Vec<u8>> {
        let mut args = Vec::with_capacity(4 + self.tasks.len() * 2 + self.blobs.len() * 3);
        args.extend([
            self.now.arg(),
            self.worker.as_bytes().to_vec(),
            self.token.as_bytes().to_vec(),
            arg(self.tasks.len()),
        ]);
        for (id, words) in self.tasks {
            args.push(id.as_bytes().to_vec());
            args.push(arg(*words));
        }
        for (p, blob) in &self.blobs {
            blob.push(*p, &mut args);
        }
        args
    }

    fn reply(&self, value: Value) -> Result<Self::Reply, String> {
        maybe_restage(value, super::commit::outcome)
    }
}

/// `rc_stage`: one piece of a blob too large to go inline, written where it goes.
pub struct Stage<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The staging worker.
    pub worker: &'a str,
    /// The token of the call that will carry the blob.
    pub token: &'a str,
    /// The blob's partition.
    pub partition: u32,
    /// Where this piece starts in the blob.
    pub offset: usize,
    /// The piece (at most [`crate::STAGE_PIECE`] bytes).
    pub piece: &'a [u8],
}

impl Call for Stage<'_> {
    const FUNCTION: &'static str = "rc_stage";
    /// False when the staged blob does not end where this piece starts (Redis lost it): stage it
    /// again from the start.
    type Reply = bool;

    fn args(&self) -> Vec<Vec<u8>> {
        vec![
            self.now.arg(),
            self.worker.as_bytes().to_vec(),
            self.token.as_bytes().to_vec(),
            arg(self.partition),
            arg(self.offset),
            self.piece.to_vec(),
        ]
    }

    fn reply(&self, value: Value) -> Result<bool, String> {
        Ok(reply::int(&value) != Some(-1))
    }
}

/// `rc_merge_claim`: up to `max` partitions due for merging, leased to `worker`.
pub struct ClaimMerges<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The merging worker.
    pub worker: &'a str,
    /// The lease of each merge.
    pub lease: Duration,
    /// When a partition is due.
    pub policy: &'a MergePolicy,
    /// Most partitions leased at once.
    pub max: u32,
}

impl Call for ClaimMerges<'_> {
    const FUNCTION: &'static str = "rc_merge_claim";
    type Reply = Vec<MergeClaim>;

    fn args(&self) -> Vec<Vec<u8>> {
        vec![
            self.now.arg(),
            self.worker.as_bytes().to_vec(),
            arg(millis(self.lease)),
            arg(self.policy.min_parts),
            arg(self.policy.min_age.as_millis()),
            arg(self.policy.max_parts.max(1)),
            arg(self.max.max(1)),
        ]
    }

    fn reply(&self, value: Value) -> Result<Vec<MergeClaim>, String> {
        items(value)?
            .into_iter()
            .map(|claim| {
                let fields =
                    reply::array(claim).ok_or_else(|| "a claim not an array".to_string())?;
                let partition = fields.first().and_then(reply::uint);
                let gen = fields.get(1).and_then(reply::uint);
                match (partition.and_then(|p| u32::try_from(p).ok()), gen) {
                    (Some(partition), Some(gen)) => Ok(MergeClaim {
                        partition,
                        gen,
                        seqs: fields[2..].iter().filter_map(reply::string).collect(),
                    }),
                    _ => Err(format!("{fields:?}")),
                }
            })
            .collect()
    }
}

/// `rc_merge_commit`: a merged partition replaces its result and exactly the partials it read.
pub struct MergeCommit<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The merging worker.
    pub worker: &'a str,
    /// Unique to this call: names its staged blob.
    pub token: String,
    /// The merge's claim (partition, generation, partials).
    pub claim: &'a MergeClaim,
    /// Distinct words in the merged result.
    pub distinct: u64,
    /// Words with repetitions in it.
    pub words: u64,
    /// The merged result.
    pub result: Blob<'a>,
    /// Its top-K entries (always inline).
    pub top: &'a [u8],
}

impl Call for MergeCommit<'_> {
    const FUNCTION: &'static str = "rc_merge_commit";
    /// True when committed, false when stale (another merge came first).
    type Reply = MaybeRestage<bool>;

    fn args(&self) -> Vec<Vec<u8>> {
        let claim = self.claim;
        let mut args = vec![
            self.now.arg(),
            self.worker.as_bytes().to_vec(),
            self.token.as_bytes().to_vec(),
            arg(claim.partition),
            arg(claim.gen),
            arg(self.distinct),
            arg(self.words),
            arg(claim.seqs.len()),
        ];
        args.extend(claim.seqs.iter().map(|s| s.as_bytes().to_vec()));
        self.result.push(claim.partition, &mut args);
        Blob::Inline(self.top).push(claim.partition, &mut args);
        args
    }

    fn reply(&self, value: Value) -> Result<Self::Reply, String> {
        maybe_restage(value, |items| match verdict(items).as_str() {
            "ok" => Ok(true),
            "stale" => Ok(false),
            _ => Err(format!("{items:?}")),
        })
    }
}
