//! How a worker behaves: one type, whether the worker is started by `run`/`stream` (which turns it
//! into `redcount worker` flags with [`WorkerOptions::to_args`]) or by a user in another shell (whose
//! flags the binary parses back into it).

use std::time::Duration;

use redcount_protocol::{Lease, LinkOptions};

/// How a worker behaves; the job's spec supplies what is left as None.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerOptions {
    /// Unique consumer name; host-pid-random when None.
    pub name: Option<String>,
    /// Lease per task; the job's when None.
    pub lease: Option<Lease>,
    /// Deliveries before a task is given up; the job's when None.
    pub max_attempts: Option<u32>,
    /// Most bytes counted into one commit: small tasks are batched up to this size.
    pub batch_bytes: u64,
    /// Most tasks counted into one commit.
    pub batch_tasks: u64,
    /// Most time spent counting before a commit, so progress lands regularly (and survives a crash
    /// of Redis that comes often) and latency stays bounded; tasks claimed but not counted by then go
    /// into the next commit.
    pub batch_time: Duration,
    /// Extra CPU time spent on every input file of a task (demonstrations and fault tests: a heavier computation,
    /// which a SIGSTOP/SIGCONT straggler really slows down, unlike a sleep).
    pub slow: Duration,
    /// Longest a worker spends counting one task: past it the worker takes the task for one that
    /// hangs it and exits (a hung worker renews its leases forever otherwise); the task is handed
    /// out alone from then on and given up after max_attempts.
    pub task_timeout: Duration,
    /// How long to wait for a job that does not exist (yet, or again after Redis lost it).
    pub wait_for_job: Duration,
    /// When idle, re-run a task that has run this many times longer than the recent p90 (0: never).
    pub speculate_factor: f64,
    /// ... and for at least this long.
    pub speculate_min: Duration,
    /// Merge a partition's partial counts once the oldest has waited this long (how far the live
    /// result may lag behind the commits).
    pub merge_after: Duration,
    /// How patient the worker is with an unreachable Redis (not a flag: a process's own default).
    pub link: LinkOptions,
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            name: None,
            lease: None,
            max_attempts: None,
            batch_bytes: 16 << 20,
            batch_tasks: 1024,
            batch_time: Duration::from_millis(250),
            slow: Duration::ZERO,
            task_timeout: Duration::from_secs(600),
            wait_for_job: Duration::from_secs(60),
            speculate_factor: 3.0,
            speculate_min: Duration::from_millis(500),
            merge_after: Duration::from_secs(1),
            link: LinkOptions::default(),
        }
    }
}

impl WorkerOptions {
    /// The `redcount worker` flags that make a worker process behave like this: the one place they
    /// are written (the binary's test parses them back and compares).
    pub fn to_args(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let mut args = Vec::new();
        let mut flag = |name: &str, value: String| {
            args.push(format!("--{name}"));
            args.push(value);
        };
        if let Some(name) = &self.name {
            flag("name", name.clone());
        }
        if let Some(lease) = self.lease {
            flag("lease", ms(lease.get()));
        }
        if let Some(attempts) = self.max_attempts {
            flag("max-attempts", attempts.to_string());
        }
        flag("batch-bytes", self.batch_bytes.to_string());
        flag("batch-tasks", self.batch_tasks.to_string());
        flag("batch-time", ms(self.batch_time));
        flag("task-timeout", ms(self.task_timeout));
        flag("wait-for-job", ms(self.wait_for_job));
        flag("speculate-factor", self.speculate_factor.to_string());
        flag("speculate-min", ms(self.speculate_min));
        flag("merge-after", ms(self.merge_after));
        if !self.slow.is_zero() {
            flag("slow", ms(self.slow));
        }
        args
    }
}
