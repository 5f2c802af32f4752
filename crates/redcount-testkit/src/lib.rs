//! Test support: an **independent** word count to compare results with (written separately from the
//! product's tokenizer, on purpose naive), seeded corpora, helpers for processes tests start, and a
//! fault-injecting TCP proxy for network faults, a Raft group whose links pass through such proxies, hosts in network namespaces, and a real
//! S3-compatible server.

#![warn(missing_docs)]

pub mod corpus;
pub mod job_command;
pub mod netns;
pub mod oracle;
pub mod proxy;
pub mod raft_group;
pub mod s3;

pub use corpus::{sample_corpus, Rng};
pub use job_command::JobCommand;
pub use oracle::{assert_same_counts, oracle_count, oracle_csv_count, read_out_file, Counts};
pub use proxy::{Fault, FaultProxy};

use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Waits for `child` up to `limit`; kills it and panics when it takes longer (tests stay bounded).
pub fn wait_with_timeout(
    child: &mut Child,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {limit:?}");
            }
        }
    }
}

/// Children killed when the guard drops, so a failing test leaves no process behind.
#[derive(Default)]
pub struct ChildGuard(pub Vec<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for a child with piped output (both read while it runs, so a chatty child never blocks),
/// killing it after `limit`.
pub fn wait_output(mut child: Child, limit: Duration, what: &str) -> Output {
    use std::io::Read;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_thread = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_thread = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let status = wait_with_timeout(&mut child, limit, what);
    Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}
