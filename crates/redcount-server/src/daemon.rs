//! Daemonized `redis-server` processes under one directory, as `cluster up` starts them (Sentinel
//! sets and Redis Clusters alike): each node is a port, with its config, pid, log and data files
//! named after it, so that `cluster status`, `cluster down` and a later `cluster up` find it again
//! after `cluster up` has exited.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::stop_all;
use crate::{write_private, ServerError};

/// The lines every node's config starts with: its address and where its files go.
pub(crate) fn common_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "port {port}\nbind 127.0.0.1\ndaemonize yes\npidfile {d}/{port}.pid\nlogfile {d}/{port}.log\ndir {d}\n\
         dbfilename {port}.rdb\nappendfilename {port}.aof\nappenddirname aof-{port}\n"
    )
}

/// Pid of the redis-server on `port` under `dir`, from its pid file, if it still runs.
pub(crate) fn pid(dir: &Path, port: u16) -> Option<i32> {
    crate::running_pid(&dir.join(format!("{port}.pid")), "redis-server")
}

/// Its log file.
pub(crate) fn log(dir: &Path, port: u16) -> std::path::PathBuf {
    dir.join(format!("{port}.log"))
}

/// Writes the node's config (mode 0600: it holds the password) and starts it.
pub(crate) fn start(
    program: &Path,
    dir: &Path,
    port: u16,
    conf: &str,
    sentinel: bool,
) -> Result<(), ServerError> {
    let path = dir.join(format!("{port}.conf"));
    write_private(&path, conf).map_err(|source| ServerError::Dir {
        path: path.clone(),
        source,
    })?;
    launch(program, dir, port, sentinel)
}

/// Starts the node on `port` from its config file; waits for its pid file.
pub(crate) fn launch(
    program: &Path,
    dir: &Path,
    port: u16,
    sentinel: bool,
) -> Result<(), ServerError> {
    let path = dir.join(format!("{port}.conf"));
    // umask 077: a Sentinel (or a cluster node, its nodes file) rewrites its files whenever its
    // state changes, and would leave them readable by everyone; files it creates are now private.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 077 && exec \"$0\" \"$@\"")
        .arg(program)
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if sentinel {
        cmd.arg("--sentinel");
    }
    let status = cmd.status().map_err(ServerError::Spawn)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid(dir, port).is_none() {
        if !status.success() || Instant::now() > deadline {
            return Err(ServerError::NotReady {
                port,
                detail: format!("it exited with {status} or wrote no pid file"),
                log: log(dir, port),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Stops the nodes on `ports` under `dir` (SIGTERM, then SIGKILL after 5 s) and removes their
/// pid files.
pub(crate) fn stop(dir: &Path, ports: &[u16]) {
    let pids: Vec<i32> = ports.iter().filter_map(|&p| pid(dir, p)).collect();
    stop_all(&pids, Duration::from_secs(5));
    for port in ports {
        let _ = std::fs::remove_file(dir.join(format!("{port}.pid")));
    }
}

/// The directory, made absolute and created; refused if `marker` (the file a cluster of either
/// kind records itself in) says one was already started there.
pub(crate) fn fresh_dir(dir: &Path, markers: &[&str]) -> Result<std::path::PathBuf, ServerError> {
    let dir = std::path::absolute(dir).map_err(|source| ServerError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    std::fs::create_dir_all(&dir).map_err(|source| ServerError::Dir {
        path: dir.clone(),
        source,
    })?;
    if markers.iter().any(|m| dir.join(m).exists()) {
        return Err(ServerError::Dir {
            path: dir.clone(),
            source: std::io::Error::other(
                "a cluster was already started here: run `redcount cluster down` first",
            ),
        });
    }
    Ok(dir)
}

/// The file a cluster of daemons is recorded in: `key value` lines (password, ports ...), mode
/// 0600, so that `cluster status`, `down` and a later `up` find it again.
pub(crate) struct Record(std::collections::HashMap<String, String>);

impl Record {
    /// Reads the record at `path`.
    pub(crate) fn read(path: &Path) -> Result<Record, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::Dir {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Record(
            text.lines()
                .map(|line| {
                    let (key, value) = line.split_once(' ').unwrap_or((line, ""));
                    (key.to_string(), value.to_string())
                })
                .collect(),
        ))
    }

    /// Writes `fields` to `path`, privately and atomically.
    pub(crate) fn write(path: &Path, fields: &[(&str, String)]) -> std::io::Result<()> {
        let text: String = fields.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        write_private(path, &text)
    }

    /// The value of `key` ("" when absent).
    pub(crate) fn text(&self, key: &str) -> String {
        self.0.get(key).cloned().unwrap_or_default()
    }

    /// A number (0 when absent or not one).
    pub(crate) fn number(&self, key: &str) -> usize {
        self.text(key).parse().unwrap_or(0)
    }

    /// A comma-separated list of ports.
    pub(crate) fn ports(&self, key: &str) -> Vec<u16> {
        self.text(key)
            .split(',')
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

/// Ports as a record writes them: `1,2,3`.
pub(crate) fn join_ports(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
