//! redcount's live dashboard: `redcount ui`, and `run`/`stream` with `--ui`. One reader thread reads
//! Redis twice a second ([`reader`]) and publishes a snapshot; the web server ([`server`]) answers
//! every page, API call, event stream and `/metrics` scrape from that snapshot, so open tabs add no
//! load to Redis. Pages and script are embedded in the binary (`assets/`): no CDN, no build step.

#![warn(missing_docs)]

pub mod metrics;
pub mod model;
pub mod reader;
pub mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::reader::{Reader, TICK};

/// Where `redcount ui` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7377";

/// A running dashboard; stops when dropped.
pub struct Dashboard {
    addr: SocketAddr,
    snapshot: watch::Receiver<Arc<model::Snapshot>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Dashboard {
    /// Serves the dashboard of the Redis at `url` (every job, or only `only`) on `listen`. Fails at
    /// once when the address is taken or Redis cannot be reached.
    pub fn start(url: &str, listen: SocketAddr, only: Option<String>) -> anyhow::Result<Dashboard> {
        let listener = std::net::TcpListener::bind(listen).with_context(|| {
            format!("cannot listen on {listen} for the dashboard: pick another address (`redcount ui --listen ADDR`, or `--ui=ADDR` on `run` and `stream`)")
        })?;
        listener
            .set_nonblocking(true)
            .context("cannot set up the dashboard's socket")?;
        let addr = listener.local_addr().context("the dashboard's address")?;
        let metrics = Arc::new(Metrics::new());
        let mut reader = Reader::open(url, only, metrics.clone())?;
        let (tx, rx) = watch::channel(Arc::new(reader.tick()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader_stop = stop.clone();
        let reader = std::thread::Builder::new()
            .name("ui-reader".into())
            .spawn(move || {
                while !reader_stop.load(Ordering::SeqCst) {
                    std::thread::sleep(TICK);
                    if tx.send(Arc::new(reader.tick())).is_err() {
                        return;
                    }
                }
            })
            .context("cannot start the dashboard's reader")?;
        let state = server::AppState {
            snapshot: rx.clone(),
            metrics,
            listen: addr,
        };
        let server_stop = stop.clone();
        std::thread::Builder::new()
            .name("ui-server".into())
            .spawn(move || serve(listener, state, server_stop))
            .context("cannot start the dashboard's server")?;
        Ok(Dashboard {
            addr,
            snapshot: rx,
            stop,
            reader: Some(reader),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits (up to `timeout`) until the pages were sent job `name` as finished or failed, so a
    /// `--ui` run does not take its dashboard away before the pages saw how the job ended.
    pub fn wait_until_settled(&self, name: &str, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            let settled = self
                .snapshot
                .borrow()
                .details
                .get(name)
                .is_some_and(|d| d.status.finished);
            if settled {
                // One more tick: the message that said so has reached every open page.
                std::thread::sleep(TICK);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The page of job `name`.
    pub fn job_url(&self, name: &str) -> String {
        format!("http://{}/jobs/{name}", self.addr)
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn serve(listener: std::net::TcpListener, state: server::AppState, stop: Arc<AtomicBool>) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("the dashboard cannot start its runtime: {err}");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => {
                tracing::error!("the dashboard cannot listen: {err}");
                return;
            }
        };
        let shutdown = async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        if let Err(err) = axum::serve(listener, server::router(state))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("the dashboard stopped: {err}");
        }
    });
}
