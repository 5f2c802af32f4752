//! A private `redis-server` child process: on a free loopback port, with a random password given on
//! stdin (never on a command line, where `ps` shows it), files in a directory of its own, stopped on
//! drop. `redcount run` uses one when no `--redis` is given; every test starts its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::process::{die_with_parent, free_port, random_hex};

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "redis-server was not found on PATH. Install it with `sudo apt-get install -y redis-server` \
         (Debian/Ubuntu), or point redcount at a running server with --redis URL"
    )]
    /// No redis-server binary found.
    NotInstalled,
    /// A directory or file could not be prepared.
    #[error("could not prepare {path}: {source}")]
    Dir {
        /// Which one.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// What was asked for cannot be started (the message says why and what to ask instead).
    #[error("{0}")]
    Refused(String),
    /// The process could not be started.
    #[error("could not start redis-server: {0}")]
    Spawn(#[source] std::io::Error),
    /// The server started but did not answer.
    #[error("redis-server on port {port} did not come up: {detail} (log: {log})")]
    NotReady {
        /// Its port.
        port: u16,
        /// What went wrong.
        detail: String,
        /// Its log file.
        log: PathBuf,
    },
}

/// Settings of a private server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Where its files go; a fresh temp dir (removed on drop) when None.
    pub dir: Option<PathBuf>,
    /// Extra `redis.conf` lines (persistence, replication ...).
    pub config: Vec<String>,
}

/// A running `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: String,
    dir: PathBuf,
    config: Vec<String>,
    _temp: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    pub fn start(options: ServerOptions) -> Result<RedisServer, ServerError> {
        let program = find_redis_server().ok_or(ServerError::NotInstalled)?;
        let (dir, temp) = match options.dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir).map_err(|source| ServerError::Dir {
                    path: dir.clone(),
                    source,
                })?;
                (dir, None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("redcount-redis-")
                    .tempdir()
                    .map_err(|source| ServerError::Dir {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut server = RedisServer {
            child: None,
            port: 0,
            password: random_hex(16),
            dir,
            config: options.config,
            _temp: temp,
        };
        // A free port can be taken between our probe and redis binding it: try a few.
        let mut last = None;
        for _ in 0..5 {
            server.port = free_port().map_err(ServerError::Spawn)?;
            match server.spawn(&program) {
                Ok(()) => return Ok(server),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or(ServerError::NotInstalled))
    }

    /// `redis://:password@127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// The password clients must `AUTH` with.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the server process has ended (crashed, or killed by someone else).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// SIGKILL: a real crash, nothing saved on the way down.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, password, directory and data files.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.kill();
        let program = find_redis_server().ok_or(ServerError::NotInstalled)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn(&program) {
                Ok(()) => return Ok(()),
                // The old socket may linger for a moment after a kill.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn spawn(&mut self, program: &Path) -> Result<(), ServerError> {
        let mut command = Command::new(program);
        die_with_parent(&mut command);
        let mut child = command
            .arg("-")
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(ServerError::Spawn)?;
        let mut conf = format!(
            "port {}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {}\nmasterauth {}\ndir {}\n\
             logfile {}\ndaemonize no\nsave \"\"\nappendonly no\n",
            self.port,
            self.password,
            self.password,
            self.dir.display(),
            self.log_path().display(),
        );
        for line in &self.config {
            conf.push_str(line);
            conf.push('\n');
        }
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(conf.as_bytes())
                .map_err(ServerError::Spawn)?;
        }
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), ServerError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = self.url();
        // A server is usually up within 5-15 ms: look again soon at first, less often later (a
        // refused connection costs microseconds; a fixed 20 ms was most of a small job's start).
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(self.not_ready(format!("it exited with {status}")));
                }
            }
            let ping = redis::Client::open(url.as_str()).and_then(|c| {
                let mut con = c.get_connection_with_timeout(Duration::from_millis(200))?;
                redis::cmd("PING").query::<String>(&mut con)
            });
            match ping {
                Ok(_) => return Ok(()),
                Err(err) if Instant::now() > deadline => {
                    self.kill();
                    return Err(self.not_ready(err.to_string()));
                }
                Err(_) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    fn not_ready(&self, detail: String) -> ServerError {
        ServerError::NotReady {
            port: self.port,
            detail,
            log: self.log_path(),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-server` on PATH (or in /usr/sbin, /usr/local/bin where Debian and source installs put it).
pub fn find_redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}
