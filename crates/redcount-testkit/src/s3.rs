//! A real S3-compatible HTTP server for tests and benchmarks, on a free loopback port, stopped on
//! drop: `moto_server` (PyPI `moto[server]`, installed into `target/test-venv` by
//! `scripts/test-venv.sh`), whose buckets and objects are made with plain HTTP requests written
//! here, independently of the `object_store` client that redcount reads them with (moto does not
//! check request signatures); or, for benchmarks, `s3s-fs` (crates.io, a Rust S3 server over a
//! directory, when it is on PATH), whose objects are files written into its directory. Bucket names
//! follow S3's rules: 3 to 63 lowercase letters, digits, dots and hyphens.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running S3-compatible server.
pub struct S3Server {
    child: Child,
    port: u16,
    /// Where `s3s-fs` keeps its buckets (None: moto, which keeps them in memory).
    root: Option<PathBuf>,
}

/// `moto_server` on PATH, or in the workspace's test venv.
pub fn find_moto_server() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/moto_server");
    on_path("moto_server").or_else(|| venv.is_file().then_some(venv))
}

/// `name` on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Credentials of `s3s-fs` (which checks signatures), local and throwaway.
const S3S_KEY: (&str, &str) = ("redcount-bench", "redcount-bench-secret");

impl S3Server {
    /// Starts `moto_server` on 127.0.0.1 and waits (up to 30 s) until it answers.
    pub fn start() -> std::io::Result<S3Server> {
        let program = find_moto_server().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "moto_server not found: run scripts/test-venv.sh (it installs moto[server])",
            )
        })?;
        S3Server::spawn(
            &program,
            |port| {
                vec![
                    "-H".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    port.to_string(),
                ]
            },
            None,
        )
    }

    /// Starts `s3s-fs` (on PATH) serving the buckets that are directories of `root`.
    pub fn start_s3s_fs(root: &Path) -> std::io::Result<S3Server> {
        let program = on_path("s3s-fs").ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "s3s-fs not found on PATH (cargo install s3s-fs@0.14.1 --features binary)",
            )
        })?;
        std::fs::create_dir_all(root)?;
        let root_arg = root.display().to_string();
        S3Server::spawn(
            &program,
            |port| {
                vec![
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    port.to_string(),
                    "--access-key".into(),
                    S3S_KEY.0.into(),
                    "--secret-key".into(),
                    S3S_KEY.1.into(),
                    root_arg.clone(),
                ]
            },
            Some(root.to_path_buf()),
        )
    }

    fn spawn(
        program: &Path,
        args: impl Fn(u16) -> Vec<String>,
        root: Option<PathBuf>,
    ) -> std::io::Result<S3Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new(program);
        command
            .args(args(port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec the closure makes one async-signal-safe call (prctl): the
        // server dies with the thread that started it, even when a test is killed.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = command.spawn()?;
        let mut server = S3Server { child, port, root };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.request("GET", "/", b"").is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(std::io::Error::other(format!(
                    "moto_server exited: {status}"
                )));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(
                    "moto_server did not answer within 30 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid (a benchmark reads its CPU time from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The environment a client of this server needs (the standard AWS variables; moto takes any
    /// credentials).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let (key, secret) = match self.root {
            Some(_) => S3S_KEY,
            None => ("redcount-test", "redcount-test-secret"),
        };
        vec![
            ("AWS_ACCESS_KEY_ID", key.into()),
            ("AWS_SECRET_ACCESS_KEY", secret.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) -> std::io::Result<()> {
        if let Some(root) = &self.root {
            return std::fs::create_dir_all(root.join(bucket));
        }
        self.expect_ok("PUT", &format!("/{bucket}"), b"")
    }

    /// Writes (or replaces) an object.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) -> std::io::Result<()> {
        if let Some(root) = &self.root {
            let path = root.join(bucket).join(key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            return std::fs::write(path, body);
        }
        self.expect_ok("PUT", &format!("/{bucket}/{}", escape(key)), body)
    }

    /// Deletes an object.
    pub fn delete(&self, bucket: &str, key: &str) -> std::io::Result<()> {
        if let Some(root) = &self.root {
            return std::fs::remove_file(root.join(bucket).join(key));
        }
        self.expect_ok("DELETE", &format!("/{bucket}/{}", escape(key)), b"")
    }

    /// Uploads every file below `dir` as `prefix/<path relative to dir>`; returns the keys.
    pub fn upload_dir(
        &self,
        bucket: &str,
        prefix: &str,
        dir: &Path,
    ) -> std::io::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(at) = stack.pop() {
            for entry in std::fs::read_dir(&at)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(dir)
                    .map_err(std::io::Error::other)?
                    .to_string_lossy()
                    .into_owned();
                let key = format!("{prefix}/{relative}");
                self.put(bucket, &key, &std::fs::read(&path)?)?;
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn expect_ok(&self, method: &str, target: &str, body: &[u8]) -> std::io::Result<()> {
        let (status, reply) = self.request(method, target, body)?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "{method} {target}: HTTP {status}: {}",
                String::from_utf8_lossy(&reply)
            )))
        }
    }

    /// One HTTP/1.1 request on a fresh connection: (status, body).
    fn request(&self, method: &str, target: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        // moto treats a request without credentials as anonymous (and refuses an anonymous
        // DELETE); it does not check signatures, so any well-formed Authorization header will do.
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=redcount-test/20260101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=0\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        let text = String::from_utf8_lossy(&reply);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP reply: {text:.200}")))?;
        let body_at = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(reply.len(), |i| i + 4);
        Ok((status, reply[body_at..].to_vec()))
    }
}

/// Percent-encodes what a key may hold beyond unreserved characters and `/`.
fn escape(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
