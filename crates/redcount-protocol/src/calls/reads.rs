//! `rc_status` and `rc_top` (library/reads.lua): the read-only functions of a job, sent with
//! `FCALL_RO` (replicas and Raft nodes serve them as reads).

use std::time::Duration;

use redis::Value;

use super::{arg, items, Call};
use crate::spec::millis;
use crate::Job;
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

impl Job {
    /// Progress counters; workers seen within `live_window` count as live.
    pub fn status(&mut self, now: impl Into<Now>, live_window: Duration) -> crate::Result<Status> {
        self.send(&StatusOf {
            now: now.into(),
            live_window,
        })
    }

    /// [`Job::status`] and what the driver watches of the server (`INFO server memory`: its run
    /// id, which changes on every restart or failover, and whether it may evict the job's keys), in
    /// one round trip.
    pub fn status_and_server(
        &mut self,
        now: impl Into<Now>,
        live_window: Duration,
    ) -> crate::Result<(Status, crate::ServerFacts)> {
        let call = StatusOf {
            now: now.into(),
            live_window,
        };
        let mut info = redis::cmd("INFO");
        info.arg("server").arg("memory");
        let cmds = [self.command(&call), info];
        let mut replies = self.pipeline("rc_status", &cmds)?.into_iter();
        let (Some(status), Some(info)) = (replies.next(), replies.next()) else {
            return Err(self.bad_reply("rc_status", "a pipeline of two answered fewer"));
        };
        let status = call
            .reply(status)
            .map_err(|detail| self.bad_reply("rc_status", detail))?;
        let info: String = redis::FromRedisValue::from_redis_value(info).unwrap_or_default();
        Ok((status, crate::ServerFacts::from_info(&info)))
    }
}
