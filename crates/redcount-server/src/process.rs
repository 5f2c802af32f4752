//! What every local process manager here shares: children that die with their parent, detached
//! daemons, pid files checked against /proc, stopping with SIGTERM then SIGKILL, files written
//! privately and atomically, free ports and random names.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Makes the child get SIGKILL when the thread that started it ends, so a driver killed with SIGKILL
/// leaves no redis-server or worker behind (Linux `PR_SET_PDEATHSIG`), and puts it in a process group
/// of its own, so the terminal's Ctrl-C reaches only the driver, which then stops it in order
/// (instead of the private Redis dying first and being "restarted").
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and only makes one async-signal-safe
    // system call (prctl).
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// The pid in `pid_file` if that process still runs and its command line contains `name` (a pid
/// file left by a killed process may name a pid since reused by something else).
pub fn running_pid(pid_file: &Path, name: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains(name)
        .then_some(pid)
}

/// Writes a file readable by its owner only (files that hold a password or name one), atomically: a
/// reader sees the old content or the new, never half of it.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Starts `command` detached in a session of its own (it outlives this process and its terminal)
/// and records its pid in `pid_file`.
pub fn spawn_detached(command: &mut Command, pid_file: &Path) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; it detaches the child from our terminal and process group.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let child = command.spawn()?;
    write_private(pid_file, &child.id().to_string())?;
    Ok(child.id())
}

/// Stops processes: SIGTERM to each, up to `grace` for all of them to exit, then SIGKILL to any left.
pub fn stop_all(pids: &[i32], grace: Duration) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let alive = |pid: i32| kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in pids {
        if alive(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// True for a process that has exited but was not yet reaped (it still answers signal 0).
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `n` random bytes as hex (passwords, name suffixes).
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to the clock, still unique enough for names.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8 ^ std::process::id() as u8;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
