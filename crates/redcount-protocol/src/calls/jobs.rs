//! `rc_stop`, `rc_join`, `rc_leave`, `rc_event`, `rc_drop` (library/jobs.lua): a job stopped, its
//! workers' names taken and given back, events noted, its keys deleted.

use std::time::Duration;

use redis::Value;

use super::{arg, items, verdict, Call};
use crate::job::{Joined, StopKind};
use crate::spec::millis;
use crate::{reply, Now};

/// `rc_stop`: ends the job without a result.
pub struct Stop<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// Cancelled or failed.
    pub kind: StopKind,
    /// Why, in words people read.
    pub reason: &'a str,
}

impl Call for Stop<'_> {
    const FUNCTION: &'static str = "rc_stop";
    /// False when the job had already ended (the first reason stays).
    type Reply = bool;

    fn args(&self) -> Vec<Vec<u8>> {
        vec![
            self.now.arg(),
            self.kind.as_str().as_bytes().to_vec(),
            self.reason.as_bytes().to_vec(),
        ]
    }

    fn reply(&self, value: Value) -> Result<bool, String> {
        Ok(verdict(&items(value)?) == "ok")
    }
}

/// `rc_join`: a worker process takes its name, unless another live process holds it.
pub struct Join<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The name.
    pub worker: &'a str,
    /// This process's random instance.
    pub instance: &'a str,
    /// How recently another process must have been heard from to keep the name.
    pub live_window: Duration,
}

impl Call for Join<'_> {
    const FUNCTION: &'static str = "rc_join";
    type Reply = Joined;

    fn args(&self) -> Vec<Vec<u8>> {
        vec![
            self.now.arg(),
            self.worker.as_bytes().to_vec(),
            self.instance.as_bytes().to_vec(),
            arg(millis(self.live_window)),
        ]
    }

    fn reply(&self, value: Value) -> Result<Joined, String> {
        let items = items(value)?;
        match (verdict(&items).as_str(), items.get(1).and_then(reply::uint)) {
            ("ok", _) => Ok(Joined::Yes),
            ("taken", Some(ms)) => Ok(Joined::Taken(Duration::from_millis(ms))),
            _ => Err(format!("{items:?}")),
        }
    }
}

/// `rc_leave`: these workers exited; they stop counting as live at once.
pub struct Leave<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// Their names.
    pub workers: &'a [String],
}

impl Call for Leave<'_> {
    const FUNCTION: &'static str = "rc_leave";
    /// How many of them were still registered.
    type Reply = u64;

    fn args(&self) -> Vec<Vec<u8>> {
        let mut args = vec![self.now.arg()];
        args.extend(self.workers.iter().map(|w| w.as_bytes().to_vec()));
        args
    }

    fn reply(&self, value: Value) -> Result<u64, String> {
        reply::uint(&value).ok_or_else(|| format!("{value:?}"))
    }
}

/// `rc_event`: a record in the job's `events` stream.
pub struct Event<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// What kind of event (`kill`, `restart`, ...).
    pub kind: &'a str,
    /// What happened.
    pub detail: &'a str,
}

impl Call for Event<'_> {
    const FUNCTION: &'static str = "rc_event";
    /// The event's number.
    type Reply = u64;

    fn args(&self) -> Vec<Vec<u8>> {
        vec![
            self.now.arg(),
            self.kind.as_bytes().to_vec(),
            self.detail.as_bytes().to_vec(),
        ]
    }

    fn reply(&self, value: Value) -> Result<u64, String> {
        reply::uint(&value).ok_or_else(|| format!("{value:?}"))
    }
}

/// `rc_drop`: deletes a bounded batch of the job's keys (refused while it runs unless forced).
pub struct Drop {
    /// The coordinator's time.
    pub now: Now,
    /// Also a running job.
    pub force: bool,
}

impl Call for Drop {
    const FUNCTION: &'static str = "rc_drop";
    /// (keys deleted, more left to delete).
    type Reply = (u64, bool);

    fn args(&self) -> Vec<Vec<u8>> {
        vec![self.now.arg(), arg(u8::from(self.force))]
    }

    fn reply(&self, value: Value) -> Result<(u64, bool), String> {
        let items = items(value)?;
        match (
            items.first().and_then(reply::uint),
            items.get(1).and_then(reply::uint),
        ) {
            (Some(n), Some(more)) => Ok((n, more != 0)),
            _ => Err(format!("{items:?}")),
        }
    }
}
