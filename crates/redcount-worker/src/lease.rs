//! Lease renewal: a thread with its own connection that extends the leases of the tasks the worker is
//! working on, every quarter of a lease, so a long task is not taken over while its worker is alive
//! (and the job is never quiet long enough for the coordinator to pause its leases: library/leases.lua,
//! `lease_clock`). A stopped (SIGSTOP) or dead worker stops renewing, and its tasks expire. The same
//! thread is the worker's watchdog: a task counted for longer than the task timeout hangs the worker,
//! which then exits so that the task expires and is charged for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redcount_protocol::{Job, Now};

/// Exit status of a worker that found itself hung on a task.
pub const HUNG_EXIT: i32 = 75;
/// A worker's exit status when Redis refused its writes for lack of memory: no worker can go on
/// until memory is raised, so a driver stops rather than start others.
pub const OUT_OF_MEMORY_EXIT: i32 = 74;

#[derive(Default)]
struct Held {
    ids: Vec<String>,
    /// The task being counted, and since when.
    counting: Option<(String, Instant)>,
}

/// Renews the leases of the ids it currently holds.
pub struct Renewer {
    held: Arc<Mutex<Held>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Renewer {
    /// Starts renewing for `worker` over `job` (a connection of its own); exits the process when one
    /// task is counted for longer than `task_timeout`.
    pub fn start(mut job: Job, worker: String, lease: Duration, task_timeout: Duration) -> Renewer {
        let held: Arc<Mutex<Held>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (held.clone(), stop.clone());
        let every = renew_every(lease);
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10).min(every));
                let (ids, counting) = match h.lock() {
                    Ok(held) => (held.ids.clone(), held.counting.clone()),
                    Err(_) => (Vec::new(), None),
                };
                if let Some((id, since)) = counting {
                    if since.elapsed() > task_timeout {
                        tracing::error!(
                            "{worker}: task {id} has been counted for {:.0?}, over --task-timeout \
                             {task_timeout:?}: its input hangs this worker; exiting so it is handed \
                             out alone and given up if it hangs every worker",
                            since.elapsed()
                        );
                        std::process::exit(HUNG_EXIT);
                    }
                }
                if Instant::now() < next {
                    continue;
                }
                next = Instant::now() + every;
                if ids.is_empty() {
                    continue;
                }
                match job.renew(Now::Coordinator, &worker, lease, &ids) {
                    Ok(kept) if kept.len() < ids.len() => tracing::info!(
                        "{worker}: {} of {} tasks were taken over by other workers",
                        ids.len() - kept.len(),
                        ids.len()
                    ),
                    Ok(_) => {}
                    Err(err) => tracing::warn!("{worker}: lease renewal failed: {err}"),
                }
            }
        });
        Renewer {
            held,
            stop,
            thread: Some(thread),
        }
    }

    /// Sets the task ids being worked on (empty when idle).
    pub fn hold(&self, ids: Vec<String>) {
        if let Ok(mut held) = self.held.lock() {
            held.ids = ids;
        }
    }

    /// Sets the task being counted right now (None between tasks), for the watchdog.
    pub fn counting(&self, id: Option<&str>) {
        if let Ok(mut held) = self.held.lock() {
            held.counting = id.map(|id| (id.to_string(), Instant::now()));
        }
    }
}

/// How often leases are renewed, and how often at least an idle worker looks for work: a quarter of
/// the lease, under the third after which the coordinator counts the job as unserved.
pub fn renew_every(lease: Duration) -> Duration {
    (lease / 4).max(Duration::from_millis(10))
}

impl Drop for Renewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
