//! Lease renewal: a thread with its own connection that extends the leases of the tasks the worker is
//! working on, every third of a lease, so a long task is not taken over while its worker is alive.
//! A stopped (SIGSTOP) or dead worker stops renewing, and its tasks expire.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redcount_protocol::{now_ms, Job};

/// Renews the leases of the ids it currently holds.
pub struct Renewer {
    held: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Renewer {
    /// Starts renewing for `worker` over `job` (a connection of its own).
    pub fn start(mut job: Job, worker: String, lease: Duration) -> Renewer {
        let held: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (held.clone(), stop.clone());
        let every = (lease / 3).max(Duration::from_millis(10));
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10).min(every));
                if Instant::now() < next {
                    continue;
                }
                next = Instant::now() + every;
                let ids = h.lock().map(|ids| ids.clone()).unwrap_or_default();
                if ids.is_empty() {
                    continue;
                }
                match job.renew(now_ms(), &worker, lease, &ids) {
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
            *held = ids;
        }
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
