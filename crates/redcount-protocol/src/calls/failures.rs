//! `rc_fail`, `rc_fail_piece`, `rc_defer`, `rc_split` (library/failures.lua): inputs that cannot
//! be counted, tasks another worker should take, and a charged task cut in two.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use redis::Value;

use super::{arg, items, verdict, Call};
use crate::spec::millis;
use crate::Job;
use crate::{reply, Now};

/// What became of a task whose input a worker could not open (`rc_defer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// Released, uncharged, for another live worker (claims hand it to them first).
    Deferred,
    /// Every live worker (this many) has said it cannot open it: fail it as usual.
    NobodyCan(u64),
    /// This worker no longer holds it: drop it.
    NotHeld,
}

/// `rc_fail`: gives task `id` up with `error` (a record in the dead stream).
pub struct Fail<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The worker that holds it.
    pub worker: &'a str,
    /// The task.
    pub id: &'a str,
    /// Why it cannot be counted.
    pub error: &'a str,
}

impl Call for Fail<'_> {
    const FUNCTION: &'static str = "rc_fail";
    /// False when the task was no longer pending.
    type Reply = bool;

    fn args(&self) -> Vec<Vec<u8>> {
        vec![
            self.now.arg(),
            self.worker.as_bytes().to_vec(),
            self.id.as_bytes().to_vec(),
            self.error.as_bytes().to_vec(),
        ]
    }

    fn reply(&self, value: Value) -> Result<bool, String> {
        Ok(verdict(&items(value)?) == "ok")
    }
}

/// `rc_fail_piece`: piece `index` (`path`) of packed task `id` cannot be read, recorded once; the
/// task's other pieces are committed as usual.
pub struct FailPiece<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The worker that holds the task.
    pub worker: &'a str,
    /// The task.
    pub id: &'a str,
    /// The piece's place in the task.
    pub index: usize,
    /// The piece's file.
    pub path: &'a Path,
    /// Why it cannot be read.
    pub error: &'a str,
}

impl Call for FailPiece<'_> {
    const FUNCTION: &'static str = "rc_fail_piece";
    /// False when the task was no longer leased.
    type Reply = bool;

    fn args(&self) -> Vec<Vec<u8>> {
        vec![
            self.now.arg(),
            self.worker.as_bytes().to_vec(),
            self.id.as_bytes().to_vec(),
            arg(self.index),
            self.path.as_os_str().as_bytes().to_vec(),
            self.error.as_bytes().to_vec(),
        ]
    }

    fn reply(&self, value: Value) -> Result<bool, String> {
        Ok(verdict(&items(value)?) == "ok")
    }
}

/// `rc_defer`: this worker cannot open task `id`'s input; another live worker may.
pub struct Defer<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The worker that holds it.
    pub worker: &'a str,
    /// The task.
    pub id: &'a str,
    /// Workers heard from within this window count as live.
    pub live_window: Duration,
}

impl Call for Defer<'_> {
    const FUNCTION: &'static str = "rc_defer";
    type Reply = Deferral;

    fn args(&self) -> Vec<Vec<u8>> {
        vec![
            self.now.arg(),
            self.worker.as_bytes().to_vec(),
            self.id.as_bytes().to_vec(),
            arg(millis(self.live_window)),
        ]
    }

    fn reply(&self, value: Value) -> Result<Deferral, String> {
        let items = items(value)?;
        match (verdict(&items).as_str(), items.get(1)) {
            ("deferred", _) => Ok(Deferral::Deferred),
            ("dup", _) => Ok(Deferral::NotHeld),
            ("last", Some(n)) => Ok(Deferral::NobodyCan(reply::uint(n).unwrap_or(1))),
            _ => Err(format!("{items:?}")),
        }
    }
}

/// `rc_split`: the lone holder of task `id` cuts it at `cut` (a file number of a packed task, or a
/// byte of a range).
pub struct Split<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The worker that holds it alone.
    pub worker: &'a str,
    /// The task.
    pub id: &'a str,
    /// Where to cut.
    pub cut: u64,
}

impl Call for Split<'_> {
    const FUNCTION: &'static str = "rc_split";
    /// The two parts' ids; None when `worker` no longer holds the task.
    type Reply = Option<(String, String)>;

    fn args(&self) -> Vec<Vec<u8>> {
        vec![
            self.now.arg(),
            self.worker.as_bytes().to_vec(),
            self.id.as_bytes().to_vec(),
            arg(self.cut),
        ]
    }

    fn reply(&self, value: Value) -> Result<Self::Reply, String> {
        let items = items(value)?;
        match (verdict(&items).as_str(), items.as_slice()) {
            ("ok", [_, a, b]) => Ok(Some((
                reply::string(a).unwrap_or_default(),
                reply::string(b).unwrap_or_default(),
            ))),
            ("dup", [_]) => Ok(None),
            _ => Err(format!("{items:?}")),
        }
    }
}

impl Job {
    /// Gives up on task `id` with `error` (moved to the dead stream). False if it was no longer pending.
    pub fn fail(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        id: &str,
        error: &str,
    ) -> crate::Result<bool> {
        self.send(&Fail {
            now: now.into(),
            worker,
            id,
            error,
        })
    }

    /// Records that piece `index` (`path`) of packed task `id` cannot be processed, once; the task's
    /// other pieces are committed as usual. False if the task was no longer leased.
    pub fn fail_piece(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        id: &str,
        index: usize,
        path: &std::path::Path,
        error: &str,
    ) -> crate::Result<bool> {
        self.send(&FailPiece {
            now: now.into(),
            worker,
            id,
            index,
            path,
            error,
        })
    }

    /// Says this worker cannot open task `id`'s input (missing or unreadable on its host): the task
    /// goes to another live worker if one has not said so too. See [`Deferral`].
    pub fn defer(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        id: &str,
        live_window: Duration,
    ) -> crate::Result<Deferral> {
        self.send(&Defer {
            now: now.into(),
            worker,
            id,
            live_window,
        })
    }

    /// Splits task `id`, which `worker` holds alone after its last holder fell silent counting it:
    /// into files `1..=cut` and the rest (a task of several files), or at byte `cut` (a task of one
    /// range). The parts wait to be handed out alone. None when `worker` no longer holds it.
    pub fn split(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        id: &str,
        cut: u64,
    ) -> crate::Result<Option<(String, String)>> {
        self.send(&Split {
            now: now.into(),
            worker,
            id,
            cut,
        })
    }
}
