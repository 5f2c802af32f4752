//! A job the driver has opened, in three steps of its life: [`open`] it (inputs, Redis, spec), keep it
//! whole while the coordinator crashes ([`repair`]: re-create, re-enqueue, re-seal, count what was
//! rolled back), and read its [`result`] only from a state in which it is finished.

mod enqueued;
mod open;
mod repair;
mod result;

use std::time::Instant;

use redcount_latency::Spill;
use redcount_protocol::{Job, JobSpec};

use crate::checkpoint::Checkpointer;
use crate::embedded::EmbeddedRedis;

pub use enqueued::Schedule;
pub use open::{open_session, JobKind, Planning};
pub use result::JobResult;

use enqueued::EnqueuedTasks;
use repair::CommitLog;

/// An open job and everything needed to rebuild it after Redis lost some or all of it.
pub struct Session {
    /// What the `on_open` hook returned. First field, so it is dropped first: before the private
    /// Redis below stops (fields drop in declaration order).
    _hook_guard: Option<crate::OpenGuard>,
    /// The inputs (files and objects), expanded, with their sizes and versions: a stream's
    /// catalogue. Empty for a batch job, whose plan replaces them once made.
    pub files: Vec<redcount_input::InputFile>,
    /// How many inputs the job has.
    pub file_count: u64,
    /// The coordinator's URL (with its password: never printed, passed to workers by environment).
    pub url: String,
    /// The job, over the driver's own connection.
    pub job: Job,
    /// The job's name.
    pub name: String,
    /// When the session was opened (the job's wall time starts here).
    pub started: Instant,
    /// The private Redis, stopped when the session is dropped.
    pub server: Option<EmbeddedRedis>,
    run_id: String,
    spec: JobSpec,
    /// The text of the spec's dictionary, read once: it travels in the job.
    dictionary: Option<Vec<u8>>,
    /// How a batch job's inputs were planned, once they all are (sealed with the job, to resume
    /// it from).
    plan: Option<redcount_protocol::PlanFacts>,
    /// The plan of the job this run resumes, until this run's own plan is checked against it.
    resume_plan: Option<redcount_protocol::PlanFacts>,
    /// The `--split-bytes` and packing to plan with (a resumed job's own).
    pub planning: Planning,
    /// True when this run resumes a job an earlier run left unfinished.
    pub resumed: bool,
    /// Every task enqueued so far, to re-send after a rollback.
    tasks: EnqueuedTasks,
    sealed: bool,
    /// Times the job was created again from scratch because Redis had lost it entirely.
    recreated: u64,
    /// The Redis server's run id at the last check: it changes on every restart.
    server_run: String,
    /// What the `done` stream said was committed, and when.
    commits: CommitLog,
    /// Where the latency of commits older than the job's history goes.
    pub spill: Spill,
    _checkpointer: Option<Checkpointer>,
}

impl Session {
    /// Crashes the private Redis now (for `--chaos-redis-at`).
    pub fn crash_redis(&self) {
        if let Some(server) = &self.server {
            server.crash_and_restart();
        }
    }

    /// Times the job was run again from the start because Redis had lost it.
    pub fn recreated(&self) -> u64 {
        self.recreated
    }
}
