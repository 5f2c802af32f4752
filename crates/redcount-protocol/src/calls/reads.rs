//! `rc_status` and `rc_top` (library/reads.lua): the read-only functions of a job, sent with
//! `FCALL_RO` (replicas and Raft nodes serve them as reads).

use std::time::Duration;

use redis::Value;

use super::{arg, items, Call};
use crate::spec::millis;
use crate::{reply, Now, Status};

/// `rc_status`: the job's progress counters in one snapshot.
pub struct StatusOf {
    /// The coordinator's time.
    pub now: Now,
    /// Workers heard from within this window count as live.
    pub live_window: Duration,
}

impl Call for StatusOf {
    const FUNCTION: &'static str = "rc_status";
    type Reply = Status;

    fn args(&self) -> Vec<Vec<u8>> {
        vec![self.now.arg(), arg(millis(self.live_window))]
    }

    fn reply(&self, value: Value) -> Result<Status, String> {
        Ok(Status::from_pairs(&items(value)?))
    }
}

/// `rc_top`: the `k` most frequent words of a `redis`-aggregation job, read in one step.
pub struct Top {
    /// How many.
    pub k: usize,
}

impl Call for Top {
    const FUNCTION: &'static str = "rc_top";
    /// Word and count, count descending, then word bytes ascending.
    type Reply = Vec<(Vec<u8>, u64)>;

    fn args(&self) -> Vec<Vec<u8>> {
        vec![arg(self.k)]
    }

    fn reply(&self, value: Value) -> Result<Self::Reply, String> {
        let items = items(value)?;
        let mut top = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            let [word, count] = pair else {
                return Err("an odd number of items".into());
            };
            let (Some(word), Some(count)) = (reply::bytes(word), reply::string(count)) else {
                return Err(format!("{pair:?}"));
            };
            let count = count
                .parse::<f64>()
                .map_err(|_| format!("count '{count}'"))?;
            top.push((word, count as u64));
        }
        // The words above the cutoff come in ZREVRANGE's order (ties by word descending).
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(top)
    }
}
