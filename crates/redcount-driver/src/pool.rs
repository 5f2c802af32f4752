//! The worker processes `run` starts: `redcount worker` children that get the Redis URL through the
//! environment (never on the command line, where `ps` would show the password), each with its own name.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The environment variable that carries the Redis URL to workers (and to every command).
pub const REDIS_URL_ENV: &str = "REDIS_URL";

/// A set of worker processes, killed when dropped.
pub struct WorkerPool {
    children: Vec<Child>,
}

impl WorkerPool {
    /// Starts `n` workers of `job`; `extra` are more `worker` flags (lease, attempts ...).
    pub fn spawn(
        exe: &Path,
        url: &str,
        job: &str,
        n: usize,
        extra: &[String],
    ) -> anyhow::Result<WorkerPool> {
        let mut pool = WorkerPool {
            children: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let child = Command::new(exe)
                .arg("worker")
                .arg("--job")
                .arg(job)
                .args(extra)
                .env(REDIS_URL_ENV, url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("starting a worker process ({})", exe.display()))?;
            pool.children.push(child);
        }
        Ok(pool)
    }

    /// Process ids of the workers still tracked.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Number of workers still running, and the failed exits seen so far.
    pub fn poll(&mut self) -> (usize, Vec<ExitStatus>) {
        let mut running = 0;
        let mut failed = Vec::new();
        for child in &mut self.children {
            match child.try_wait() {
                Ok(None) => running += 1,
                Ok(Some(status)) if !status.success() => failed.push(status),
                _ => {}
            }
        }
        (running, failed)
    }

    /// Waits up to `grace` for workers to exit on their own (they do once the job is finished).
    pub fn finish(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.poll().0 > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}
