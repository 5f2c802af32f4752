//! Helpers shared by the end-to-end tests: run the real `redcount` binary against real redis-server
//! processes the tests start, and compare results with the independent oracle.
#![allow(dead_code, unused_imports)]

pub mod lived_in;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub use redcount_testkit::{
    assert_same_counts, oracle_count, oracle_csv_count, read_out_file, wait_output, ChildGuard,
    Counts, JobCommand,
};

/// The binary under test.
pub fn redcount() -> Command {
    redcount_testkit::job_command::isolated(Path::new(EXE))
}

/// Where the binary under test is.
pub const EXE: &str = env!("CARGO_BIN_EXE_redcount");

/// `redcount run`, built flag by flag.
pub fn job() -> JobCommand {
    JobCommand::run(EXE)
}

/// Runs `redcount ARGS` to completion (bounded), returning its output.
pub fn run_ok(args: &[&str]) -> Output {
    run_ok_env(&[], args)
}

/// [`run_ok`] with these environment variables.
pub fn run_ok_env(env: &[(&str, String)], args: &[&str]) -> Output {
    let out = run_env(env, args);
    assert!(
        out.status.success(),
        "redcount {args:?} failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `redcount ARGS` to completion within two minutes, whatever its exit status.
pub fn run(args: &[&str]) -> Output {
    run_env(&[], args)
}

/// [`run`] with these environment variables (an object store's `AWS_*`, say).
pub fn run_env(env: &[(&str, String)], args: &[&str]) -> Output {
    let child = redcount()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start redcount");
    wait_output(
        child,
        Duration::from_secs(120),
        &format!("redcount {args:?}"),
    )
}

/// Waits for a started `redcount` (bounded) and checks that it succeeded, showing its stderr if not.
pub fn wait_success(child: std::process::Child, limit: Duration, what: &str) -> Output {
    let out = wait_output(child, limit, what);
    assert!(
        out.status.success(),
        "{what} failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a job over `inputs` with `extra` flags, writes `--out`, and returns the counts it wrote.
pub fn count_with(dir: &Path, inputs: &[&Path], extra: &[&str]) -> Counts {
    let out = dir.join("result.tsv");
    let mut command = job().out(&out).args(extra);
    for input in inputs {
        command = command.input(input);
    }
    command.succeed();
    read_out_file(&out)
}

/// Every file below `dir`, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(dir);
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Parses `--json` output.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Every file below `dir` that holds `secret` is readable by its owner only (mode 0600); returns
/// how many there are.
pub fn assert_secret_files_private(dir: &Path, secret: &str) -> usize {
    use std::os::unix::fs::PermissionsExt;
    let mut found = 0;
    for path in files_below(dir) {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(
                mode,
                0o600,
                "{} holds the secret with mode {mode:o}",
                path.display()
            );
            found += 1;
        }
    }
    found
}

/// The Python of `target/test-venv` (made by `scripts/test-venv.sh`, which CI runs), for tests that
/// drive redcount with real Python clients. Outside CI, None (and the test says it is skipped)
/// when it has not been made; in CI its absence fails the test.
pub fn test_python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: run scripts/test-venv.sh",
        python.display()
    );
    eprintln!(
        "skipped: no {} (run scripts/test-venv.sh)",
        python.display()
    );
    None
}

/// The keys of the Redis at `url` matching `pattern`, sorted (KEYS: test servers are small).
pub fn sorted_keys(url: &str, pattern: &str) -> Vec<String> {
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect");
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query(&mut con)
        .expect("keys");
    keys.sort();
    keys
}

/// A fresh [`redcount_testkit::netns::Lan`], or None (the test says it is skipped) where this
/// machine cannot make one; CI runs as root, so there the test must run.
pub fn lan_or_skip() -> Option<redcount_testkit::netns::Lan> {
    match redcount_testkit::netns::Lan::new() {
        Ok(lan) => Some(lan),
        Err(err) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and must run tests in network namespaces: {err}"
            );
            eprintln!("skipped: {err}");
            None
        }
    }
}

/// Sends `sig` to a child process.
pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig)
        .expect("signal a worker");
}

/// Starts `redcount worker` on `job` (its stderr dropped).
pub fn spawn_worker(url: &str, job: &str, extra: &[&str]) -> Child {
    redcount()
        .args(["worker", "--job", job, "--redis", url])
        .args(extra)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start worker")
}

/// Starts `redcount run` on `input` that only enqueues (`--workers 0`) and writes `--out`.
pub fn start_driver(
    url: &str,
    job: &str,
    out: &std::path::Path,
    input: &std::path::Path,
    extra: &[&str],
) -> Child {
    self::job()
        .workers(0)
        .job(job)
        .redis(url)
        .out(out)
        .args(extra)
        .input(input)
        .spawn()
}

/// The job's status; it must exist.
pub fn job_status(url: &str, job: &str) -> redcount_protocol::Status {
    try_status(url, job).expect("the job exists")
}

/// The job's status, or None while the driver has not created it yet.
pub fn try_status(url: &str, job: &str) -> Option<redcount_protocol::Status> {
    let mut j = redcount_protocol::Job::new(
        redcount_protocol::Link::open(url, redcount_protocol::LinkOptions::default()).expect("url"),
        job,
    )
    .expect("job");
    match j.status(
        redcount_protocol::now_ms(),
        std::time::Duration::from_secs(60),
    ) {
        Ok(s) => Some(s),
        Err(redcount_protocol::Error::NoJob { .. }) => None,
        Err(e) => panic!("status of {job}: {e}"),
    }
}
