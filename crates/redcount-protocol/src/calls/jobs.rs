//! `rc_stop`, `rc_join`, `rc_leave`, `rc_event`, `rc_drop` (library/jobs.lua): a job stopped, its
//! workers' names taken and given back, events noted, its keys deleted.

use std::time::Duration;

use redis::Value;

use super::{arg, items, verdict, Call};
use crate::spec::millis;
use crate::Job;
use crate::{reply, Now};

/// How a job ends without a result (`rc_stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// Stopped on purpose: `jobs cancel`, or a stream stopped before its end.
    Cancelled,
    /// Cannot give an exact result any more (a key it needs was lost).
    Failed,
}

impl StopKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StopKind::Cancelled => "cancelled",
            StopKind::Failed => "failed",
        }
    }
}

/// Whether a worker may use its name in a job (`rc_join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// The name is this process's now.
    Yes,
    /// Another live process holds the name; it was heard from this long ago.
    Taken(Duration),
}

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

impl Job {
    /// Notes an event (a fault injected, a worker restarted ...) in the job's `events` stream.
    pub fn event(&mut self, now: impl Into<Now>, kind: &str, detail: &str) -> crate::Result<u64> {
        self.send(&Event {
            now: now.into(),
            kind,
            detail,
        })
    }

    /// Ends the job without a result (see [`StopKind`]). False when it had already ended (finished,
    /// or stopped before: the first reason stays).
    pub fn stop(
        &mut self,
        now: impl Into<Now>,
        kind: StopKind,
        reason: &str,
    ) -> crate::Result<bool> {
        self.send(&Stop {
            now: now.into(),
            kind,
            reason,
        })
    }

    /// Fails the job because of `reason` (a key of it found lost or spoilt) and returns the error
    /// to stop with: the job's workers leave and its driver reports the reason.
    pub fn fail_job(&mut self, now: Now, reason: &str) -> crate::Error {
        if let Err(err) = self.stop(now, StopKind::Failed, reason) {
            tracing::warn!("could not mark job '{}' failed: {err}", self.name);
        }
        crate::Error::Stopped {
            job: self.name.clone(),
            addr: self.link.addr().to_string(),
            reason: format!("failed: {reason}"),
        }
    }

    /// Takes the name `worker` for this process (see [`Joined`]); `live_window` is how recently
    /// another process must have been heard from under that name to keep it.
    pub fn join(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        live_window: Duration,
    ) -> crate::Result<Joined> {
        let instance = self.instance.clone();
        self.send(&Join {
            now: now.into(),
            worker,
            instance: &instance,
            live_window,
        })
    }

    /// Says that these workers exited: they stop counting as live at once (`rc_leave`), and their
    /// names are free. Returns how many of them were still registered.
    pub fn leave(&mut self, now: impl Into<Now>, workers: &[String]) -> crate::Result<u64> {
        self.send(&Leave {
            now: now.into(),
            workers,
        })
    }

    /// Deletes every key of the job (refused while it runs unless `force`). Returns how many. Each
    /// `rc_drop` call deletes a bounded batch, so a large job takes several calls, with every other
    /// client of Redis served in between.
    pub fn drop_job(&mut self, now: impl Into<Now>, force: bool) -> crate::Result<u64> {
        let now = now.into();
        let mut deleted = 0;
        loop {
            let (n, more) = self.send(&Drop { now, force })?;
            deleted += n;
            if !more {
                crate::register_jobs(&mut self.link, now, std::slice::from_ref(&self.name), false)?;
                return Ok(deleted);
            }
        }
    }
}
