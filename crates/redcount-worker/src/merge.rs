//! The reduce step of the default aggregation: a partition a worker claimed for merging is read
//! (its result and the partials waiting), folded into one blob in one pass per blob, its top-K
//! picked, and committed in place of exactly what was read. The protocol crate sends the calls;
//! the computation is here, with the rest of what a worker computes.

use std::time::Duration;

use redcount_count::partial;
use redcount_protocol::{
    Error, Job, MergeClaim, MergeInputs, MergePolicy, Merged, Now, TOP_PER_PARTITION,
};

/// A partition's result and partials folded into one blob. A blob that does not parse was
/// written by someone else (every blob redcount stores is checked to be whole when it is
/// committed): merged, it would spoil the result, so the job fails naming it.
pub fn merge(
    job: &mut Job,
    now: Now,
    claim: &MergeClaim,
    (result, parts): MergeInputs,
) -> Result<Merged, Error> {
    let mut inputs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    inputs.push(&result);
    let merged = partial::merge(&inputs).and_then(|(blob, distinct)| {
        let (top, words) = partial::top_and_words(&blob, TOP_PER_PARTITION)?;
        Ok((blob, distinct, top, words))
    });
    match merged {
        Ok((blob, distinct, top, words)) => Ok(Merged {
            blob,
            distinct,
            words,
            top,
        }),
        Err(err) => {
            let culprit = job
                .merge_input_keys(claim)
                .into_iter()
                .zip(&inputs)
                .find(|(_, blob)| partial::for_each(blob, |_, _| {}).is_err())
                .map(|(key, _)| key)
                .unwrap_or_else(|| format!("partition {}", claim.partition));
            let reason = format!(
                "{culprit} holds bytes that are not redcount's partial counts ({err}): another \
                 client wrote it; the counts cannot be exact, run the job again"
            );
            Err(job.fail_job(now, &reason))
        }
    }
}

/// Merges a claimed partition: its inputs read in one `MGET`, merged, committed. False when the
/// merge was stale (another merge took the partition over after this worker's lease ran out).
pub fn merge_claimed(
    job: &mut Job,
    now: impl Into<Now>,
    worker: &str,
    claim: &MergeClaim,
) -> Result<bool, Error> {
    let now = now.into();
    let Some(inputs) = job.merge_inputs(claim)? else {
        return Ok(false);
    };
    let merged = merge(job, now, claim, inputs)?;
    job.merge_commit(now, worker, claim, &merged)
}

/// Merges up to `max` due partitions in three round trips however many they are, where one at a
/// time took three each (a worker on another host waits a round trip for every call): their
/// claims in one call, their inputs in one pipeline of `MGET`s, then their commits in one
/// pipeline. Returns (merges committed, merges found stale).
pub fn merge_due(
    job: &mut Job,
    now: impl Into<Now>,
    worker: &str,
    lease: Duration,
    policy: &MergePolicy,
    max: u32,
) -> Result<(u64, u64), Error> {
    let now = now.into();
    let claims = job.merge_claim_many(now, worker, lease, policy, max)?;
    let inputs = job.merge_inputs_many(&claims)?;
    let mut stale = 0;
    let mut merges = Vec::with_capacity(claims.len());
    for (claim, inputs) in claims.iter().zip(inputs) {
        match inputs {
            Some(inputs) => merges.push((claim, merge(job, now, claim, inputs)?)),
            None => stale += 1,
        }
    }
    let pairs: Vec<(&MergeClaim, &Merged)> = merges.iter().map(|(c, m)| (*c, m)).collect();
    let committed = job.merge_commit_many(now, worker, &pairs)?;
    let ok = committed.iter().filter(|c| **c).count() as u64;
    Ok((ok, stale + committed.len() as u64 - ok))
}
