//! A real S3-compatible HTTP server for tests and benchmarks: `moto_server` (PyPI `moto[server]`,
//! installed into `target/test-venv` by `scripts/test-venv.sh`) on a free loopback port, stopped on
//! drop. Buckets and objects are made with plain HTTP requests written here, independently of the
//! `object_store` client that redcount reads them with (moto does not check request signatures).
//! Bucket names follow S3's rules: 3 to 63 lowercase letters, digits, dots and hyphens.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `moto_server`.
pub struct S3Server {
    child: Child,
    port: u16,
}

/// `moto_server` on PATH, or in the workspace's test venv.
pub fn find_moto_server() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/moto_server");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("moto_server"))
        .chain(std::iter::once(venv))
        .find(|candidate| candidate.is_file())
}

impl S3Server {
    /// Starts `moto_server` on 127.0.0.1 and waits (up to 30 s) until it answers.
    pub fn start() -> std::io::Result<S3Server> {
        let program = find_moto_server().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "moto_server not found: run scripts/test-venv.sh (it installs moto[server])",
            )
        })?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new(program);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
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
        let mut server = S3Server { child, port };
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

    /// The environment a client of this server needs (the standard AWS variables; moto takes any
    /// credentials).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "redcount-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "redcount-test-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) -> std::io::Result<()> {
        self.expect_ok("PUT", &format!("/{bucket}"), b"")
    }

    /// Writes (or replaces) an object.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) -> std::io::Result<()> {
        self.expect_ok("PUT", &format!("/{bucket}/{}", escape(key)), body)
    }

    /// Deletes an object.
    pub fn delete(&self, bucket: &str, key: &str) -> std::io::Result<()> {
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
