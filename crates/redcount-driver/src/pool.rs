//! The worker processes a driver starts: `redcount worker` children that get the Redis URL through the
//! environment (never on the command line, where `ps` would show the password), each with its own name.
//! The pool can be shared with a fault-injection thread (kill, stop/continue, replace a worker).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use redcount_worker::WorkerOptions;

use crate::session::Session;
use crate::JobOptions;

/// The environment variable that carries the Redis URL to workers (and to every command).
pub const REDIS_URL_ENV: &str = "REDIS_URL";

/// Starts the session's workers (shared with a fault thread), or says how to start them elsewhere
/// when there are none.
pub fn start_workers(
    session: &Session,
    options: &JobOptions,
) -> anyhow::Result<Option<Arc<WorkerPool>>> {
    if options.workers == 0 {
        match &session.server {
            // The private Redis has a random password: its URL is in a file only this user reads.
            Some(server) => eprintln!(
                "waiting for workers: run `REDIS_URL=$(cat {}) redcount worker --job {}`",
                server.url_file().display(),
                session.name,
            ),
            None => eprintln!(
                "waiting for workers: run `REDIS_URL=<url> redcount worker --job {}` against {}",
                session.name,
                session.job.addr()
            ),
        }
        return Ok(None);
    }
    let pool = WorkerPool::spawn(
        &options.worker_exe,
        &session.url,
        &session.name,
        options.workers,
        &options.worker,
    )?;
    Ok(Some(Arc::new(pool)))
}

/// A set of worker processes, killed when dropped.
pub struct WorkerPool {
    exe: PathBuf,
    url: String,
    job: String,
    /// `redcount worker` flags of every worker ([`WorkerOptions::to_args`]).
    extra: Vec<String>,
    children: Mutex<Vec<Child>>,
    /// The name of every worker started (`--name`), so a driver that stops them early can say
    /// they left the job ([`redcount_protocol::Job::leave`]) instead of leaving them live for a
    /// lease window. None when the options name the workers themselves.
    names: Option<Mutex<Vec<String>>>,
}

impl WorkerPool {
    /// Starts `n` workers of `job` that behave as `options` say.
    pub fn spawn(
        exe: &Path,
        url: &str,
        job: &str,
        n: usize,
        options: &WorkerOptions,
    ) -> anyhow::Result<WorkerPool> {
        let pool = WorkerPool {
            exe: exe.to_path_buf(),
            url: url.to_string(),
            job: job.to_string(),
            extra: options.to_args(),
            children: Mutex::new(Vec::with_capacity(n)),
            names: options.name.is_none().then(Mutex::default),
        };
        for _ in 0..n {
            let child = pool.start_one()?;
            pool.lock().push(child);
        }
        Ok(pool)
    }

    fn start_one(&self) -> anyhow::Result<Child> {
        let mut command = Command::new(&self.exe);
        redcount_server::die_with_parent(&mut command);
        command
            .arg("worker")
            .arg("--job")
            .arg(&self.job)
            .args(&self.extra);
        if let Some(names) = &self.names {
            let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
            let name = format!("{}-w{}", redcount_worker::unique_worker_name(), names.len());
            command.arg("--name").arg(&name);
            names.push(name);
        }
        command
            .env(REDIS_URL_ENV, &self.url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting a worker process ({})", self.exe.display()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Child>> {
        // A panic while holding the lock leaves the list intact: keep using it.
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of worker slots (running or not).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when the pool has no worker slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Process id of worker slot `i`.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.lock().get(i).map(Child::id)
    }

    /// Sends `signal` to worker slot `i` (SIGKILL, SIGSTOP, SIGCONT). Returns its pid.
    pub fn signal(&self, i: usize, signal: Signal) -> Option<u32> {
        let mut children = self.lock();
        let child = children.get_mut(i)?;
        let pid = child.id();
        let _ = kill(Pid::from_raw(pid as i32), signal);
        if signal == Signal::SIGKILL {
            let _ = child.wait();
        }
        Some(pid)
    }

    /// Replaces worker slot `i` (after it was killed) with a fresh worker. Returns the new pid.
    pub fn replace(&self, i: usize) -> anyhow::Result<u32> {
        let fresh = self.start_one()?;
        let pid = fresh.id();
        let mut children = self.lock();
        if let Some(old) = children.get_mut(i) {
            let _ = old.kill();
            let _ = old.wait();
            *old = fresh;
        } else {
            children.push(fresh);
        }
        Ok(pid)
    }

    /// Starts a fresh worker in every slot whose worker has exited.
    pub fn replace_exited(&self) -> anyhow::Result<()> {
        let mut children = self.lock();
        for child in children.iter_mut() {
            if matches!(child.try_wait(), Ok(Some(_))) {
                *child = self.start_one()?;
            }
        }
        Ok(())
    }

    /// Number of workers still running, and the failed exits seen so far.
    pub fn poll(&self) -> (usize, Vec<ExitStatus>) {
        let mut running = 0;
        let mut failed = Vec::new();
        for child in self.lock().iter_mut() {
            match child.try_wait() {
                Ok(None) => running += 1,
                Ok(Some(status)) if !status.success() => failed.push(status),
                _ => {}
            }
        }
        (running, failed)
    }

    /// The names of every worker this pool started (empty when the options named them).
    pub fn names(&self) -> Vec<String> {
        self.names
            .as_ref()
            .map(|n| n.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Kills every worker still running and waits for it.
    pub fn kill_all(&self) {
        for child in self.lock().iter_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                stop_now(child.id());
            }
            let _ = child.wait();
        }
    }

    /// Waits up to `grace` for workers to exit on their own (they do the moment the job ends),
    /// then kills any that are left. A thread blocks in `wait` for them, so the driver learns of
    /// each exit when it happens instead of polling for it (a one-file job's last milliseconds).
    pub fn finish(self, grace: Duration) {
        let children = std::mem::take(&mut *self.lock());
        let pids: Vec<u32> = children.iter().map(Child::id).collect();
        // The waiter says which slot exited, as each does.
        let (exited, exits) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            for (i, mut child) in children.into_iter().enumerate() {
                let _ = child.wait();
                let _ = exited.send(i);
            }
        });
        let deadline = Instant::now() + grace;
        let mut left: Vec<Option<u32>> = pids.into_iter().map(Some).collect();
        while left.iter().any(Option::is_some) {
            match exits.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(i) => left[i] = None,
                Err(_) => break,
            }
        }
        for pid in left.into_iter().flatten() {
            stop_now(pid);
        }
        let _ = waiter.join();
    }
}

/// Kills a worker, stopped (SIGSTOP by a fault test) or not.
fn stop_now(pid: u32) {
    let pid = Pid::from_raw(pid as i32);
    let _ = kill(pid, Signal::SIGCONT);
    let _ = kill(pid, Signal::SIGKILL);
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.kill_all();
    }
}
