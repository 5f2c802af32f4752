//! Periodic checkpoints (the course's design): a thread with its own connection asks Redis for a
//! `BGSAVE` every interval. A crash then rolls the job back to the last snapshot at worst, which the
//! driver and the workers repair (re-enqueue, re-deliver, recount).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redcount_protocol::{Link, LinkOptions};

/// Issues BGSAVE every interval until dropped.
pub struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts asking the Redis at `url` for a `BGSAVE` every `every`.
    pub fn start(url: &str, every: Duration) -> anyhow::Result<Checkpointer> {
        // Patient but bounded: a restarting Redis is retried, the loop goes on either way.
        let options = LinkOptions {
            give_up_after: Duration::from_secs(5),
            ..LinkOptions::default()
        };
        let mut link = Link::open(url, options)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                if Instant::now() < next {
                    continue;
                }
                next = Instant::now() + every;
                let saved = link.call("BGSAVE", |con| {
                    redis::cmd("BGSAVE").query::<redis::Value>(con)
                });
                match saved {
                    Ok(_) => tracing::debug!("checkpoint: BGSAVE started"),
                    // One still running is fine: the next interval tries again.
                    Err(err) if err.to_string().contains("in progress") => {}
                    Err(err) => tracing::warn!("checkpoint: BGSAVE failed: {err}"),
                }
            }
        });
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
