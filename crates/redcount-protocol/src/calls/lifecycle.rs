//! `rc_create`, `rc_enqueue`, `rc_seal` (library/lifecycle.lua): a job made, its tasks added
//! exactly once, its list of tasks closed.

use std::os::unix::ffi::OsStrExt;

use redis::Value;

use super::{arg, items, verdict, Call};
use crate::job::Enqueued;
use crate::reply;
use crate::spec::{PlanFacts, DICTIONARY_TEXT};
use crate::task::NewTask;
use crate::{JobSpec, Now};

/// `rc_create`: makes the job with its spec unless it exists.
pub struct Create<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// This run's id (a resumed job keeps the first run's).
    pub run_id: &'a str,
    /// The settings every worker shares.
    pub spec: &'a JobSpec,
    /// The text of the `--dictionary` file, which travels in the job.
    pub dictionary: Option<&'a [u8]>,
    /// How a batch job's inputs were planned, when known at creation.
    pub plan: Option<&'a PlanFacts>,
}

/// What `rc_create` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The job is there: made by this call (`created`) or before it, with its run id.
    Job {
        /// Made by this call.
        created: bool,
        /// The job's run id.
        run_id: String,
    },
    /// Keys of the job are left but not its meta hash (evicted or deleted by another client):
    /// this many.
    Leftovers(u64),
}

impl Call for Create<'_> {
    const FUNCTION: &'static str = "rc_create";
    type Reply = Created;

    fn args(&self) -> Vec<Vec<u8>> {
        let mut args = vec![self.now.arg(), self.run_id.as_bytes().to_vec()];
        for (field, value) in self.spec.to_fields() {
            args.push(field.as_bytes().to_vec());
            args.push(value);
        }
        if let Some(text) = self.dictionary {
            args.push(DICTIONARY_TEXT.as_bytes().to_vec());
            args.push(text.to_vec());
        }
        for (field, value) in self.plan.map(PlanFacts::to_fields).into_iter().flatten() {
            args.push(field.as_bytes().to_vec());
            args.push(value);
        }
        args
    }

    fn reply(&self, value: Value) -> Result<Created, String> {
        let items = items(value)?;
        match items.as_slice() {
            [v, n] if reply::string(v).as_deref() == Some("leftovers") => {
                Ok(Created::Leftovers(reply::uint(n).unwrap_or(0)))
            }
            [created, id] => Ok(Created::Job {
                created: reply::int(created) == Some(1),
                run_id: reply::string(id).unwrap_or_default(),
            }),
            _ => Err(format!("{items:?}")),
        }
    }
}

/// `rc_enqueue`: adds tasks continuing the job's run of sequence numbers (idempotent).
pub struct Enqueue<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The tasks, sequence numbers increasing.
    pub tasks: &'a [NewTask],
}

impl Call for Enqueue<'_> {
    const FUNCTION: &'static str = "rc_enqueue";
    type Reply = Enqueued;

    fn args(&self) -> Vec<Vec<u8>> {
        let mut args = Vec::with_capacity(1 + self.tasks.len() * 8);
        args.push(self.now.arg());
        for t in self.tasks {
            args.push(arg(t.seq));
            args.push(t.path.as_os_str().as_bytes().to_vec());
            args.push(arg(t.start));
            args.push(arg(t.end));
            args.push(t.format.as_str().as_bytes().to_vec());
            args.push(crate::task::encode_more(&t.more));
            args.push(t.due_ms.map(arg).unwrap_or_default());
            args.push(t.version.clone().unwrap_or_default().into_bytes());
        }
        args
    }

    fn reply(&self, value: Value) -> Result<Enqueued, String> {
        let items = items(value)?;
        match (verdict(&items).as_str(), items.get(1..).unwrap_or_default()) {
            ("ok", [added, skipped]) => Ok(Enqueued::Added {
                added: reply::uint(added).unwrap_or(0),
                skipped: reply::uint(skipped).unwrap_or(0),
            }),
            ("gap", [last]) => Ok(Enqueued::Gap {
                last_seq: reply::uint(last).unwrap_or(0),
            }),
            _ => Err(format!("{items:?}")),
        }
    }
}

/// `rc_seal`: no task will be added any more; with `expected_tasks` > 0, only if the job holds
/// that many (a rollback lost none).
pub struct Seal<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// Tasks the job must hold (0: any).
    pub expected_tasks: u64,
    /// How a batch job's inputs were planned, written with the seal.
    pub plan: Option<&'a PlanFacts>,
}

impl Call for Seal<'_> {
    const FUNCTION: &'static str = "rc_seal";
    /// (sealed, tasks the job holds).
    type Reply = (bool, u64);

    fn args(&self) -> Vec<Vec<u8>> {
        let mut args = vec![self.now.arg(), arg(self.expected_tasks)];
        for (field, value) in self.plan.map(PlanFacts::to_fields).into_iter().flatten() {
            args.push(field.as_bytes().to_vec());
            args.push(value);
        }
        args
    }

    fn reply(&self, value: Value) -> Result<(bool, u64), String> {
        let items = items(value)?;
        match items.as_slice() {
            [sealed, tasks] => Ok((
                reply::int(sealed) == Some(1),
                reply::uint(tasks).unwrap_or(0),
            )),
            _ => Err(format!("{items:?}")),
        }
    }
}
