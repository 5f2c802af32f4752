//! `rc_create`, `rc_enqueue`, `rc_seal` (library/lifecycle.lua): a job made, its tasks added
//! exactly once, its list of tasks closed.

use std::os::unix::ffi::OsStrExt;

use redis::Value;

use super::{arg, items, verdict, Call};
use crate::reply;
use crate::spec::{PlanFacts, DICTIONARY_TEXT};
use crate::task::NewTask;
use crate::Job;
use crate::{JobSpec, Now};

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The new tasks were added; those the job already held were skipped.
    Added {
        /// Tasks added.
        added: u64,
        /// Tasks already there.
        skipped: u64,
    },
    /// Nothing was added: the job holds tasks 1..=`last_seq` only (a rollback lost the rest), and
    /// the batch did not continue from there. Re-send from `last_seq + 1`.
    Gap {
        /// The job's last task.
        last_seq: u64,
    },
}

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

impl Job {
    /// Creates the job with `spec` unless it exists. Returns (created, the job's run id).
    pub fn create(
        &mut self,
        now: impl Into<Now>,
        run_id: &str,
        spec: &JobSpec,
    ) -> crate::Result<(bool, String)> {
        self.create_with_dictionary(now, run_id, spec, None, None)
    }

    /// [`Job::create`], with the text of the spec's `--dictionary` file: it travels in the job,
    /// so every worker uses the words the job was started with, whatever happens to the file
    /// meanwhile or on other hosts; and with the `plan` a batch job's inputs were cut into, which
    /// a later `run` of the same job resumes from.
    pub fn create_with_dictionary(
        &mut self,
        now: impl Into<Now>,
        run_id: &str,
        spec: &JobSpec,
        dictionary: Option<&[u8]>,
        plan: Option<&PlanFacts>,
    ) -> crate::Result<(bool, String)> {
        let now = now.into();
        let made = self.send(&Create {
            now,
            run_id,
            spec,
            dictionary,
            plan,
        })?;
        match made {
            Created::Leftovers(n) => Err(crate::Error::Stopped {
                job: self.name.clone(),
                addr: self.link.addr().to_string(),
                reason: format!(
                    "has {n} key(s) left but no meta hash ({}): part of it was evicted or \
                     deleted by another client, so it cannot be counted exactly; remove what \
                     is left with `redcount jobs rm {} --force` and run it again",
                    self.keys.meta, self.name
                ),
            }),
            Created::Job { created, run_id } => {
                // Listed from now on (also when it was there already: made by an older version).
                crate::register_jobs(&mut self.link, now, std::slice::from_ref(&self.name), true)?;
                Ok((created, run_id))
            }
        }
    }

    /// Adds tasks (idempotent: tasks already there are skipped), which must continue the job's run
    /// of sequence numbers: see [`Enqueued`].
    pub fn enqueue(&mut self, now: impl Into<Now>, tasks: &[NewTask]) -> crate::Result<Enqueued> {
        self.send(&Enqueue {
            now: now.into(),
            tasks,
        })
    }

    /// Seals the job. With `expected_tasks` > 0 it refuses when the job holds a different number of
    /// tasks (a rollback lost some) and returns (false, tasks there).
    pub fn seal(&mut self, now: impl Into<Now>, expected_tasks: u64) -> crate::Result<(bool, u64)> {
        self.seal_with_plan(now, expected_tasks, None)
    }

    /// [`Job::seal`], writing how a batch job's inputs were planned in the same call (known only
    /// once they are all listed): what a later `run` of the job resumes from.
    pub fn seal_with_plan(
        &mut self,
        now: impl Into<Now>,
        expected_tasks: u64,
        plan: Option<&PlanFacts>,
    ) -> crate::Result<(bool, u64)> {
        self.send(&Seal {
            now: now.into(),
            expected_tasks,
            plan,
        })
    }
}
