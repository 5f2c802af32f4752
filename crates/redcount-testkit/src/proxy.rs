//! A fault-injecting TCP proxy, in the spirit of toxiproxy: put it between a client and a server (or
//! between two Raft nodes) and switch what the link does at any time: pass, cut (every connection
//! closed, new ones refused), black-hole (connections stay open, every byte is lost), drop one
//! direction only, delay, or throttle. Threads and blocking sockets on loopback; no root needed.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the link does to the bytes crossing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Everything passes.
    Pass,
    /// Every open connection is closed and new ones are closed at once (a link down, a host gone).
    Cut,
    /// Connections stay open but every byte is lost, both ways (a partition that sends no reset).
    Blackhole,
    /// Bytes from the client to the server are lost; replies still pass.
    DropRequests,
    /// Bytes from the server to the client are lost: requests arrive and are executed, their replies
    /// never come back.
    DropReplies,
    /// Every chunk arrives this long after it was sent, both ways: latency, like a longer wire, not
    /// a narrower one (chunks in flight overlap, so bulk transfers are not slowed per chunk).
    Delay(Duration),
    /// At most this many bytes per second each way.
    Bandwidth(u64),
}

#[derive(Debug)]
struct Shared {
    fault: Mutex<Fault>,
    /// Bumped by every [`Fault::Cut`]: connections opened before it close.
    cuts: AtomicU64,
    stop: AtomicBool,
    /// Bytes passed on, for tests that check the proxy was really used.
    bytes: AtomicU64,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One listening port that forwards to one upstream address through a switchable fault.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        FaultProxy::start_on("127.0.0.1:0", upstream)
    }

    /// Listens on `listen` (`host:port`, port 0 for a free one) and forwards to `upstream`.
    pub fn start_on(listen: &str, upstream: &str) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::Pass),
            cuts: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            bytes: AtomicU64::new(0),
        });
        let (s, up) = (shared.clone(), upstream.to_string());
        let accept = std::thread::spawn(move || accept_loop(listener, &up, &s));
        Ok(FaultProxy {
            addr,
            upstream: upstream.to_string(),
            shared,
            accept: Some(accept),
        })
    }

    /// `host:port` to connect to instead of the upstream.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where it forwards to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Switches the fault; [`Fault::Cut`] also closes every open connection.
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
        if fault == Fault::Cut {
            self.shared.cuts.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    /// Bytes passed on so far, both ways.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cuts.fetch_add(1, Ordering::SeqCst);
        // The accept loop polls the stop flag (no wake-up connection: from another network
        // namespace than the proxy's, its address may be out of reach, or lead elsewhere).
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: &str, shared: &Arc<Shared>) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        // Accepted sockets inherit non-blocking mode on some systems: the pumps block (with a
        // read timeout).
        if client.set_nonblocking(false).is_err() {
            continue;
        }
        if shared.fault() == Fault::Cut {
            continue; // dropped: closed at once
        }
        let Ok(server) = TcpStream::connect_timeout(
            &match upstream.parse() {
                Ok(a) => a,
                Err(_) => continue,
            },
            Duration::from_secs(1),
        ) else {
            continue;
        };
        let epoch = shared.cuts.load(Ordering::SeqCst);
        for (from, to, up) in [
            (client.try_clone(), server.try_clone(), true),
            (server.try_clone(), client.try_clone(), false),
        ] {
            if let (Ok(from), Ok(to)) = (from, to) {
                let s = shared.clone();
                std::thread::spawn(move || pump(from, to, up, epoch, &s));
            }
        }
    }
}

/// Copies `from` to `to` (`up`: client to server) through the fault, until either side closes or a
/// cut comes.
fn pump(mut from: TcpStream, mut to: TcpStream, up: bool, epoch: u64, shared: &Arc<Shared>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = vec![0u8; 64 * 1024];
    // Started at the first delayed chunk; None when the thread could not be started.
    let mut delayed: Option<Option<DelayLine>> = None;
    loop {
        if shared.cuts.load(Ordering::SeqCst) != epoch {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let mut delay = None;
        let lost = match shared.fault() {
            Fault::Blackhole => true,
            Fault::DropRequests => up,
            Fault::DropReplies => !up,
            Fault::Delay(d) => {
                delay = Some(d);
                false
            }
            Fault::Bandwidth(per_second) => {
                std::thread::sleep(Duration::from_secs_f64(n as f64 / per_second.max(1) as f64));
                false
            }
            Fault::Pass | Fault::Cut => false,
        };
        if lost {
            continue;
        }
        if delay.is_some() || delayed.is_some() {
            // Onto the delay line: its own thread writes each chunk when it is due while this one
            // goes on reading. Once it exists every chunk goes through it, so none overtakes one
            // still on its way.
            let line = delayed.get_or_insert_with(|| delay_line(&to, shared));
            let Some((line, _)) = line.as_ref() else {
                break;
            };
            let due = Instant::now() + delay.unwrap_or_default();
            if line.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    // The delay line delivers what it holds (unless cut), then ends.
    if let Some(Some((line, thread))) = delayed {
        drop(line);
        if shared.cuts.load(Ordering::SeqCst) == epoch {
            let _ = thread.join();
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Chunks on their way, each with the time it is due.
type DelayLine = (
    std::sync::mpsc::Sender<(Instant, Vec<u8>)>,
    std::thread::JoinHandle<()>,
);

/// A thread that writes each chunk it is sent to `to` once its time has come, in order.
fn delay_line(to: &TcpStream, shared: &Arc<Shared>) -> Option<DelayLine> {
    let mut to = to.try_clone().ok()?;
    let shared = shared.clone();
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let thread = std::thread::spawn(move || {
        for (due, chunk) in rx {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                return;
            }
            shared
                .bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    Some((tx, thread))
}
