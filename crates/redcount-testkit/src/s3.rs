//! A real S3-compatible HTTP server for tests and benchmarks, on a free loopback port, stopped on
//! drop: `moto_server` (PyPI `moto[server]`, installed into `target/test-venv` by
//! `scripts/test-venv.sh`), whose buckets and objects are made with plain HTTP requests written
//! here, independently of the `object_store` client that redcount reads them with (moto does not
//! check request signatures); or, for benchmarks, when they are on PATH, `s3s-fs` (crates.io, a
//! Rust S3 server over a directory, whose objects are files written into it) and Garage
//! (crates.io, a production S3-compatible store, whose objects are uploaded signed, through the
//! `object_store` crate). Bucket names follow S3's rules: 3 to 63 lowercase letters, digits, dots
//! and hyphens.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running S3-compatible server.
pub struct S3Server {
    child: Child,
    port: u16,
    kind: Kind,
}

/// Which server, and what it needs to be driven.
enum Kind {
    /// moto: buckets in memory, any credentials, objects written with plain HTTP.
    Moto,
    /// s3s-fs: buckets are the directories of `root`, objects its files.
    S3sFs { root: PathBuf },
    /// Garage: its own CLI with `config` makes buckets; objects go through the S3 API, signed.
    Garage { config: PathBuf },
}

/// `moto_server` on PATH, or in the workspace's test venv.
pub fn find_moto_server() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/moto_server");
    on_path("moto_server").or_else(|| venv.is_file().then_some(venv))
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
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

/// Credentials imported into Garage (its key ids are `GK` and 24 hex digits, secrets 64 hex
/// digits), local and throwaway.
const GARAGE_KEY: (&str, &str) = (
    "GK0123456789abcdef01234567",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
);

impl S3Server {
    /// Starts `moto_server` on 127.0.0.1 and waits (up to 30 s) until it answers.
    pub fn start() -> std::io::Result<S3Server> {
        let program = find_moto_server().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "moto_server not found: run scripts/test-venv.sh (it installs moto[server])",
            )
        })?;
        let port = free_port()?;
        let args = ["-H", "127.0.0.1", "-p", &port.to_string()].map(str::to_string);
        S3Server::spawn(&program, &args, port, Kind::Moto)
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
        let port = free_port()?;
        let args = [
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            S3S_KEY.0,
            "--secret-key",
            S3S_KEY.1,
            &root.display().to_string(),
        ]
        .map(str::to_string);
        let kind = Kind::S3sFs {
            root: root.to_path_buf(),
        };
        S3Server::spawn(&program, &args, port, kind)
    }

    /// Starts a one-node Garage (`garage` on PATH; crates.io) with its files under `dir`: its
    /// layout applied and a key imported, ready for buckets.
    pub fn start_garage(dir: &Path) -> std::io::Result<S3Server> {
        let program = on_path("garage").ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "garage not found on PATH (cargo install garage@2.5.0 --locked)",
            )
        })?;
        std::fs::create_dir_all(dir)?;
        let (port, rpc, admin) = (free_port()?, free_port()?, free_port()?);
        let hex = |n: usize| -> String {
            let mut bytes = vec![0u8; n];
            let mut rng = crate::Rng::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1),
            );
            bytes.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        };
        let d = dir.display();
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{}\"\n\n[s3_api]\n\
                 s3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{port}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\n[admin]\n\
                 api_bind_addr = \"127.0.0.1:{admin}\"\nadmin_token = \"{}\"\n",
                hex(32),
                hex(16)
            ),
        )?;
        let args = ["-c", &config.display().to_string(), "server"].map(str::to_string);
        let server = S3Server::spawn(&program, &args, port, Kind::Garage { config })?;
        let id = server.garage(&["node", "id", "-q"])?;
        let id = id.trim().split('@').next().unwrap_or("").to_string();
        server.garage(&["layout", "assign", "-z", "dc1", "-c", "10G", &id])?;
        server.garage(&["layout", "apply", "--version", "1"])?;
        server.garage(&[
            "key",
            "import",
            "--yes",
            GARAGE_KEY.0,
            GARAGE_KEY.1,
            "-n",
            "redcount",
        ])?;
        Ok(server)
    }

    /// Runs `garage -c CONFIG ARGS` for a Garage server; its stdout.
    fn garage(&self, args: &[&str]) -> std::io::Result<String> {
        let Kind::Garage { config } = &self.kind else {
            return Err(std::io::Error::other("not a Garage server"));
        };
        let program = on_path("garage").ok_or_else(|| std::io::Error::other("garage is gone"))?;
        let out = Command::new(program)
            .arg("-c")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "garage {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn spawn(program: &Path, args: &[String], port: u16, kind: Kind) -> std::io::Result<S3Server> {
        let mut command = Command::new(program);
        command
            .args(args)
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
        let mut server = S3Server { child, port, kind };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.request("GET", "/", b"").is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(std::io::Error::other(format!(
                    "{} exited: {status}",
                    program.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "{} did not answer within 30 s",
                    program.display()
                )));
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
        let (key, secret, region) = match self.kind {
            Kind::Moto => ("redcount-test", "redcount-test-secret", "us-east-1"),
            Kind::S3sFs { .. } => (S3S_KEY.0, S3S_KEY.1, "us-east-1"),
            Kind::Garage { .. } => (GARAGE_KEY.0, GARAGE_KEY.1, "garage"),
        };
        vec![
            ("AWS_ACCESS_KEY_ID", key.into()),
            ("AWS_SECRET_ACCESS_KEY", secret.into()),
            ("AWS_REGION", region.into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) -> std::io::Result<()> {
        match &self.kind {
            Kind::Moto => self.expect_ok("PUT", &format!("/{bucket}"), b""),
            Kind::S3sFs { root } => std::fs::create_dir_all(root.join(bucket)),
            Kind::Garage { .. } => {
                self.garage(&["bucket", "create", bucket])?;
                let key = GARAGE_KEY.0;
                self.garage(&[
                    "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", key,
                ])
                .map(|_| ())
            }
        }
    }

    /// Writes (or replaces) an object.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) -> std::io::Result<()> {
        match &self.kind {
            Kind::Moto => self.expect_ok("PUT", &format!("/{bucket}/{}", escape(key)), body),
            Kind::S3sFs { root } => {
                let path = root.join(bucket).join(key);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, body)
            }
            Kind::Garage { .. } => self.put_signed(bucket, key, body),
        }
    }

    /// A signed PUT through the `object_store` crate (for a server that checks signatures).
    fn put_signed(&self, bucket: &str, key: &str, body: &[u8]) -> std::io::Result<()> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        use object_store::ObjectStoreExt;
        let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
        for (name, value) in self.env() {
            let config: AmazonS3ConfigKey = name
                .to_ascii_lowercase()
                .parse()
                .map_err(std::io::Error::other)?;
            builder = builder.with_config(config, value);
        }
        let store = builder.build().map_err(std::io::Error::other)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime
            .block_on(store.put(&object_store::path::Path::from(key), body.to_vec().into()))
            .map(|_| ())
            .map_err(std::io::Error::other)
    }

    /// Deletes an object.
    pub fn delete(&self, bucket: &str, key: &str) -> std::io::Result<()> {
        match &self.kind {
            Kind::S3sFs { root } => std::fs::remove_file(root.join(bucket).join(key)),
            _ => self.expect_ok("DELETE", &format!("/{bucket}/{}", escape(key)), b""),
        }
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
