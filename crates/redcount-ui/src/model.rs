//! What the dashboard shows, as the JSON the API returns and the events push: an overview of every
//! job, and the detail of one. Built by the reader ([`crate::reader`]), read by the pages.

use std::collections::BTreeMap;
use std::sync::Arc;

use redcount_latency::Percentiles;
use redcount_protocol::{DeadTask, JobEvent, Status, WorkerView};
use serde::Serialize;

/// Everything the reader knows at one moment; shared by every open page.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The jobs page.
    pub overview: Arc<Overview>,
    /// The job pages, by job name.
    pub details: BTreeMap<String, Arc<JobDetail>>,
}

/// The jobs page: one line per job.
#[derive(Debug, Default, Serialize)]
pub struct Overview {
    /// The Redis read (its URL without the password).
    pub redis: String,
    /// When the reader made this (ms since the epoch, this machine's clock).
    pub generated_ms: u64,
    /// Why the last read failed, if it did (the page shows the last good data with this).
    pub error: Option<String>,
    /// Every job, by name.
    pub jobs: Vec<JobSummary>,
    /// The workers of every job, most recently heard first (at most [`WORKERS_LISTED`]).
    pub workers: Vec<WorkerRow>,
}

/// Workers listed on the jobs page.
pub const WORKERS_LISTED: usize = 100;

/// One worker of one job, as the jobs page lists them (a worker process serves one job).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerRow {
    /// The worker's name.
    pub worker: String,
    /// Its job.
    pub job: String,
    /// `live` (heard from within the live window, its job running), `left` (it said it left, or
    /// its job is over), or `silent` (not heard from: dead, hung or cut off).
    pub state: &'static str,
    /// When it was last heard from (ms, the coordinator's clock; 0: not known any more).
    pub heard_ms: u64,
    /// How long ago that was, when the reader read the job.
    pub heard_ago_ms: u64,
    /// When it claimed the first task of its that the reader saw committed (ms; 0: none yet).
    pub first_ms: u64,
    /// When its last task the reader saw was committed (ms; 0: none yet).
    pub last_ms: u64,
    /// Tasks, bytes and words it committed (the commit records the reader saw).
    pub tasks: u64,
    /// Bytes committed.
    pub bytes: u64,
    /// Words committed.
    pub words: u64,
    /// Inputs given up while it held them (of the failed inputs listed).
    pub failed: u64,
}

/// One job in a line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobSummary {
    /// The job's name.
    pub name: String,
    /// `running`, `finished` or `failed` (as `redcount status` says it).
    pub phase: String,
    /// Whether tasks may still come (`open`) or not (`sealed`).
    pub state: String,
    /// A stream job (its tasks have due times) rather than a batch.
    pub stream: bool,
    /// Tasks enqueued.
    pub tasks: u64,
    /// Tasks committed.
    pub done: u64,
    /// Tasks given up.
    pub failed: u64,
    /// Bytes enqueued.
    pub bytes: u64,
    /// Bytes committed.
    pub done_bytes: u64,
    /// Done + failed over tasks, 0..1.
    pub progress: f64,
    /// Input bytes committed per second over the last few seconds.
    pub bytes_per_second: f64,
    /// Since the job was created, until it finished (ms).
    pub age_ms: u64,
}

/// The job page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobDetail {
    /// The job's line on the jobs page.
    pub summary: JobSummary,
    /// Every counter of `redcount status`.
    pub status: Status,
    /// Tasks enqueued and not yet delivered.
    pub waiting: u64,
    /// How long the oldest of those has waited since it was due (ms), so a stalled job does not
    /// look like an idle one.
    pub oldest_waiting_ms: Option<u64>,
    /// The most frequent words so far.
    pub top: Vec<(String, u64)>,
    /// The workers heard from, with what each holds.
    pub workers: Vec<WorkerView>,
    /// Fault and operator events (kill-worker, straggler, coordinator-change ...).
    pub events: Vec<JobEvent>,
    /// Commits per second of the coordinator's clock.
    pub throughput: Vec<Throughput>,
    /// Tasks given up, with their errors.
    pub failed: Vec<DeadTask>,
    /// A shell command that counts the failed inputs again, each path quoted for a POSIX shell
    /// (names of objects in a shared bucket are chosen by others); None when nothing failed.
    pub retry_command: Option<String>,
    /// Per-file latency (stream jobs: from when a file was due).
    pub latency: Latency,
}

/// What was committed in one second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    /// Start of the second (ms, the coordinator's clock).
    pub at_ms: u64,
    /// Tasks committed in it.
    pub tasks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Their words.
    pub words: u64,
}

/// Latency of the committed files: percentiles of the whole job, and the most recent files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Due -> committed.
    pub total: Percentiles,
    /// Due -> claimed (waiting for a worker).
    pub wait: Percentiles,
    /// Claimed -> committed (being counted and committed).
    pub run: Percentiles,
    /// The most recent files, oldest first.
    pub files: Vec<FilePoint>,
}

/// One committed file on the latency timeline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FilePoint {
    /// When it was due (ms, the coordinator's clock).
    pub due_ms: u64,
    /// Due -> committed (ms).
    pub latency_ms: u64,
    /// Due -> claimed (ms).
    pub wait_ms: u64,
    /// Deliveries it took.
    pub attempts: u64,
}

/// `redcount run` over the distinct inputs of `failed`, in order, each quoted for a POSIX shell.
pub fn retry_command(failed: &[DeadTask]) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    let paths: Vec<String> = failed
        .iter()
        .filter(|f| seen.insert(f.path.clone()))
        .map(|f| shell_quote(&redcount_protocol::unescape(&f.path)))
        .collect();
    (!paths.is_empty()).then(|| format!("redcount run {}", paths.join(" ")))
}

/// `bytes` as one word of a POSIX shell that means exactly those bytes: as they are when they are
/// plain (letters, digits, `/._-+,:@%=`), else in single quotes (a quote as `'\''`), and bytes
/// that are not printable UTF-8 in bash's `$'\xNN'`.
pub fn shell_quote(bytes: &[u8]) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b);
    if !bytes.is_empty() && bytes.iter().all(|&b| plain(b)) {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut out = String::new();
    let mut quoted = false;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                if quoted {
                    out.push('\'');
                    quoted = false;
                }
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("$'\\x{b:02x}'"));
                }
                continue;
            }
            if !quoted {
                out.push('\'');
                quoted = true;
            }
            if c == '\'' {
                out.push_str("'\\''");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            if quoted {
                out.push('\'');
                quoted = false;
            }
            out.push_str(&format!("$'\\x{b:02x}'"));
        }
    }
    if quoted {
        out.push('\'');
    }
    if out.is_empty() {
        out.push_str("''");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    /// What bash makes of `word`: the bytes of its one argument.
    fn through_bash(word: &str) -> Option<Vec<u8>> {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {word}"))
            .output()
            .ok()?;
        Some(out.stdout)
    }

    #[test]
    fn a_quoted_path_is_exactly_its_bytes_to_a_shell_and_runs_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pwned = dir.path().join("PWNED");
        let names: Vec<Vec<u8>> = vec![
            b"/data/plain-name_1.txt".to_vec(),
            format!("/x$(touch {})y.txt", pwned.display()).into_bytes(),
            b"/it's `here` \\ \"now\" *.txt".to_vec(),
            b"/caf\xe9 \n\x1b[2J.txt".to_vec(),
            b"".to_vec(),
        ];
        for name in names {
            let quoted = shell_quote(&name);
            let Some(got) = through_bash(&quoted) else {
                eprintln!("skipped: no bash");
                return;
            };
            assert_eq!(got, name, "{quoted}");
        }
        assert!(!pwned.exists(), "the quoted name ran a command");
    }
}
