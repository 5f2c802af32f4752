//! A typed builder for the `redcount run` command lines tests start: each flag a test uses is a
//! method named after it, so a test says what it means instead of positions in a string array,
//! and one place knows how a test's process is started (no inherited `REDIS_URL`, `RUST_LOG` or
//! `AWS_*`, stdin closed, output piped, every wait bounded).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long a job started by [`JobCommand::output`] may take before it is killed.
pub const JOB_LIMIT: Duration = Duration::from_secs(120);

/// `exe` with nothing of the machine's setup a test did not ask for: no `REDIS_URL`, `RUST_LOG` or
/// `AWS_*` (a test's Redis and object store are the ones it names), stdin closed.
pub fn isolated(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_remove("REDIS_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A `redcount` command line: `redcount run` from [`JobCommand::run`], any other subcommand
/// from [`JobCommand::new`].
#[derive(Debug, Clone)]
pub struct JobCommand {
    exe: PathBuf,
    args: Vec<OsString>,
    inputs: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl JobCommand {
    /// `EXE SUBCOMMAND`.
    pub fn new(exe: impl Into<PathBuf>, subcommand: &str) -> Self {
        JobCommand {
            exe: exe.into(),
            args: vec![subcommand.into()],
            inputs: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `EXE run`; inputs go last whatever order the flags were given in.
    pub fn run(exe: impl Into<PathBuf>) -> Self {
        JobCommand::new(exe, "run")
    }

    /// One input (a file, a directory, a glob, `-` or an `s3://` prefix).
    pub fn input(mut self, input: impl AsRef<OsStr>) -> Self {
        self.inputs.push(input.as_ref().to_owned());
        self
    }

    /// `--redis URL`.
    pub fn redis(self, url: &str) -> Self {
        self.flag("--redis", url)
    }

    /// `--job NAME`.
    pub fn job(self, name: &str) -> Self {
        self.flag("--job", name)
    }

    /// `--out PATH`.
    pub fn out(self, path: &Path) -> Self {
        self.flag("--out", path)
    }

    /// `--workers N` (0: the driver only enqueues and waits for workers started elsewhere).
    pub fn workers(self, n: usize) -> Self {
        self.flag("--workers", n.to_string())
    }

    /// `--top K` (0: no table).
    pub fn top(self, k: usize) -> Self {
        self.flag("--top", k.to_string())
    }

    /// `--json`.
    pub fn json(self) -> Self {
        self.arg("--json")
    }

    /// `--lease-ms DURATION` (`2s`, `500ms`).
    pub fn lease(self, lease: &str) -> Self {
        self.flag("--lease-ms", lease)
    }

    /// `--merge-after DURATION`.
    pub fn merge_after(self, after: &str) -> Self {
        self.flag("--merge-after", after)
    }

    /// `--worker-slow SPEC`: the test's own slowdown of the workers (`50ms`, `0:200ms`).
    pub fn worker_slow(self, spec: &str) -> Self {
        self.flag("--worker-slow", spec)
    }

    /// A flag with its value.
    pub fn flag(mut self, name: &str, value: impl AsRef<OsStr>) -> Self {
        self.args.push(name.into());
        self.args.push(value.as_ref().to_owned());
        self
    }

    /// One argument as it is (a switch such as `--no-pack`).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Arguments as they are.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable of the process.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.into(), value.as_ref().to_owned()));
        self
    }

    /// Environment variables of the process (an object store's `AWS_*`, say).
    pub fn envs(mut self, vars: &[(&str, String)]) -> Self {
        self.env.extend(
            vars.iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        self
    }

    /// The command line as a test would type it, for messages.
    pub fn describe(&self) -> String {
        let mut words = vec!["redcount".to_string()];
        words.extend(
            self.args
                .iter()
                .chain(&self.inputs)
                .map(|a| a.to_string_lossy().into_owned()),
        );
        words.join(" ")
    }

    /// The process to start: the machine's `REDIS_URL`, `RUST_LOG` and `AWS_*` removed (a test's
    /// Redis and object store are the ones it says), stdin closed, stdout and stderr piped.
    pub fn command(&self) -> Command {
        let mut cmd = isolated(&self.exe);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.args(&self.args).args(&self.inputs);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts it.
    pub fn spawn(&self) -> Child {
        self.command()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.describe()))
    }

    /// Runs it to the end (killed after [`JOB_LIMIT`]), whatever its exit status.
    pub fn output(&self) -> Output {
        crate::wait_output(self.spawn(), JOB_LIMIT, &self.describe())
    }

    /// Runs it to the end and checks that it succeeded, showing its stderr if not.
    pub fn succeed(&self) -> Output {
        let out = self.output();
        assert!(
            out.status.success(),
            "{} failed with {}:\n{}",
            self.describe(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}
