//! The private Redis of `run` and `stream`: started with the durability asked for, restarted from its
//! own files (same port, password and directory) whenever it dies, and, for demonstrations and tests,
//! crashed on purpose (`--chaos-redis`): SIGKILL, never a clean shutdown, so recovery really starts
//! from the last checkpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redcount_server::{RedisServer, ServerOptions};

/// How the private Redis keeps its data across a crash (`--durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Durability {
    /// Nothing on disk: a crash loses the job, which the driver then runs again from the start.
    None,
    /// RDB snapshots (the driver's `BGSAVE` every `--checkpoint-ms`): a crash rolls back to the last one.
    Rdb,
    /// Append-only file, fsync once a second: a crash loses at most about a second of writes.
    AofEverysec,
    /// Append-only file, fsync on every write: a crash loses nothing that was acknowledged.
    AofAlways,
}

impl Durability {
    /// redis.conf lines (after the server's defaults `save ""`, `appendonly no`).
    pub fn config(self) -> Vec<String> {
        match self {
            Durability::None | Durability::Rdb => vec!["dbfilename dump.rdb".into()],
            Durability::AofEverysec => vec!["appendonly yes".into(), "appendfsync everysec".into()],
            Durability::AofAlways => vec!["appendonly yes".into(), "appendfsync always".into()],
        }
    }
}

/// A supervised private redis-server.
pub struct EmbeddedRedis {
    server: Arc<Mutex<RedisServer>>,
    url: String,
    url_file: std::path::PathBuf,
    restarts: Arc<AtomicU64>,
    /// Dropped to stop the watcher at once (it waits on the channel between looks).
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedRedis {
    /// Starts the server; `chaos_every` SIGKILLs and restarts it at that interval.
    pub fn start(
        durability: Durability,
        chaos_every: Option<Duration>,
    ) -> anyhow::Result<EmbeddedRedis> {
        let server = RedisServer::start(ServerOptions {
            dir: None,
            config: durability.config(),
        })?;
        let url = server.url();
        // Workers started elsewhere need the URL, password included: a file only its owner reads.
        let url_file = server.dir().join("url");
        redcount_server::write_private(&url_file, &url)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", url_file.display()))?;
        let server = Arc::new(Mutex::new(server));
        let restarts = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = channel::<()>();
        let (srv, count) = (server.clone(), restarts.clone());
        let thread = std::thread::spawn(move || {
            let mut last_chaos = Instant::now();
            // Looks every 20 ms until the channel says stop (or its sender is dropped).
            while let Err(RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(20))
            {
                let mut s = lock(&srv);
                if let Some(status) = s.exited() {
                    tracing::warn!(
                        "redis-server exited ({status}); restarting it from its files in {}",
                        s.dir().display()
                    );
                    restart(&mut s, &count);
                } else if chaos_every.is_some_and(|every| last_chaos.elapsed() >= every) {
                    tracing::info!(
                        "chaos: SIGKILL redis-server (pid {:?}) and restart it",
                        s.pid()
                    );
                    restart(&mut s, &count);
                    last_chaos = Instant::now();
                }
            }
        });
        Ok(EmbeddedRedis {
            server,
            url,
            url_file,
            restarts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `redis://:password@127.0.0.1:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A file (mode 0600) holding [`Self::url`], for `REDIS_URL=$(cat FILE) redcount worker`.
    pub fn url_file(&self) -> &std::path::Path {
        &self.url_file
    }

    /// SIGKILLs the server and starts it again from its files, now.
    pub fn crash_and_restart(&self) {
        let mut s = lock(&self.server);
        tracing::info!(
            "chaos: SIGKILL redis-server (pid {:?}) and restart it",
            s.pid()
        );
        restart(&mut s, &self.restarts);
    }

    /// How many times the server was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }
}

impl Drop for EmbeddedRedis {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        lock(&self.server).kill();
    }
}

fn lock(server: &Mutex<RedisServer>) -> MutexGuard<'_, RedisServer> {
    server.lock().unwrap_or_else(|e| e.into_inner())
}

fn restart(server: &mut RedisServer, count: &AtomicU64) {
    match server.restart() {
        Ok(()) => {
            count.fetch_add(1, Ordering::Relaxed);
        }
        Err(err) => tracing::error!("could not restart redis-server: {err}"),
    }
}
