//! Inputs in an object store: `s3://BUCKET/KEY` (one object) or `s3://BUCKET/PREFIX` (every object
//! under it), through the `object_store` crate's S3 client, so AWS S3, MinIO or any S3-compatible
//! server takes the same code path. Credentials, region and endpoint come from the standard AWS
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint), never from a command line.
//!
//! An input's location travels through the job as a path whose bytes are the URL; its version is
//! the object's ETag when the job was planned, and every read asks for exactly that version
//! (`If-Match`), so an object replaced or deleted mid-job fails by name instead of mixing two
//! versions into one count. Transient errors (5xx, timeouts, dropped connections) are retried by
//! the client with exponential backoff for up to [`set_retry_budget`] (a worker sets its lease).
//!
//! The rest of redcount is synchronous: the async client runs on one small runtime per process.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientConfigKey, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig,
};

use crate::InputError;

/// The URL scheme of an object input.
pub const SCHEME: &str = "s3://";

/// Reads in flight at once for one task (its packed objects, or the pieces of a large range).
pub const CONCURRENT_READS: usize = 64;

/// A range longer than this is read as several concurrent requests of this size: one HTTP stream
/// is slower than the network (a few tens of MB/s against a local server), several are not.
pub const READ_CHUNK: u64 = 8 << 20;

/// True when `path` is an object URL (`s3://...`) rather than a local file.
pub fn is_object(path: &Path) -> bool {
    path.as_os_str()
        .as_encoded_bytes()
        .starts_with(SCHEME.as_bytes())
}

/// An object in a store, as planning lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// `s3://BUCKET/KEY`.
    pub url: PathBuf,
    /// Its length.
    pub size: u64,
    /// Its ETag (the version every read of the job asks for), if the store gave one.
    pub version: Option<String>,
}

/// `s3://BUCKET/KEY` -> (bucket, key); the key may be empty (the whole bucket).
fn split_url(path: &Path) -> Result<(String, String), InputError> {
    let bad = |reason: &str| InputError::ObjectStore {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let text = path
        .to_str()
        .ok_or_else(|| bad("an object URL must be UTF-8"))?;
    let rest = text
        .strip_prefix(SCHEME)
        .ok_or_else(|| bad("an object URL starts with s3://"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket: use s3://BUCKET/KEY or s3://BUCKET/PREFIX"));
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// The clients of this process (one per bucket) and the runtime their requests run on.
struct Stores {
    runtime: tokio::runtime::Runtime,
    buckets: Mutex<HashMap<String, Arc<AmazonS3>>>,
}

static STORES: OnceLock<Result<Stores, String>> = OnceLock::new();

/// How long transient errors of one request are retried (ms); see [`set_retry_budget`].
static RETRY_BUDGET_MS: AtomicU64 = AtomicU64::new(10_000);

/// Retry a request's transient errors (5xx, timeouts, dropped connections) with backoff for up to
/// `budget` before the input is reported failed. A worker sets its lease: its renewals keep the
/// task while it retries, and a store that stays down that long is down, not flaky. Applies to
/// clients made afterwards (set it before the first read).
pub fn set_retry_budget(budget: Duration) {
    RETRY_BUDGET_MS.store(budget.as_millis().max(500) as u64, Ordering::Relaxed);
}

fn stores() -> Result<&'static Stores, InputError> {
    let stores = STORES.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("redcount-objects")
            .enable_all()
            .build()
            .map(|runtime| Stores {
                runtime,
                buckets: Mutex::new(HashMap::new()),
            })
            .map_err(|e| e.to_string())
    });
    stores.as_ref().map_err(|reason| InputError::ObjectStore {
        path: PathBuf::from(SCHEME),
        reason: format!("cannot start the object store client: {reason}"),
    })
}

/// The client for `bucket`, made from the AWS environment variables the first time.
fn bucket_client(path: &Path, bucket: &str) -> Result<Arc<AmazonS3>, InputError> {
    let stores = stores()?;
    let mut buckets = stores.buckets.lock().map_err(|_| InputError::ObjectStore {
        path: path.to_path_buf(),
        reason: "the object store clients were poisoned by a panic".into(),
    })?;
    if let Some(client) = buckets.get(bucket) {
        return Ok(client.clone());
    }
    let budget = Duration::from_millis(RETRY_BUDGET_MS.load(Ordering::Relaxed));
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    // The client's own defaults wait 30 s for a reply and 5 s for a connection only when asked.
    if std::env::var_os("AWS_TIMEOUT").is_none() {
        builder = builder.with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "30s");
    }
    if std::env::var_os("AWS_CONNECT_TIMEOUT").is_none() {
        builder = builder.with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            "5s",
        );
    }
    let client = builder
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 20,
            retry_timeout: budget,
        })
        .build()
        .map_err(|e| InputError::ObjectStore {
            path: path.to_path_buf(),
            reason: format!(
                "cannot configure the S3 client ({e}); set AWS_REGION, AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true for a local \
                 S3-compatible server)"
            ),
        })?;
    let client = Arc::new(client);
    buckets.insert(bucket.to_string(), client.clone());
    Ok(client)
}

/// Runs a future on the object runtime, from synchronous code.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, InputError> {
    Ok(stores()?.runtime.block_on(future))
}

/// An `object_store` error on `path`, as an input error that says what happened.
fn input_error(path: &Path, version: Option<&str>, err: object_store::Error) -> InputError {
    match err {
        object_store::Error::NotFound { .. } => InputError::ObjectMissing {
            path: path.to_path_buf(),
        },
        object_store::Error::Precondition { .. } => InputError::ObjectChanged {
            path: path.to_path_buf(),
            version: version.unwrap_or("?").to_string(),
        },
        other => InputError::ObjectStore {
            path: path.to_path_buf(),
            reason: store_said(&other.to_string()),
        },
    }
}

/// An object store's error in a user's words: an S3 error document (`<Error><Code>...`) becomes
/// its code and message with what to check (never the XML), anything else keeps its text, with
/// the setting to check when it looks like a missing one.
fn store_said(error: &str) -> String {
    let tag = |name: &str| -> Option<&str> {
        let open = format!("<{name}>");
        let start = error.find(&open)? + open.len();
        let len = error[start..].find(&format!("</{name}>"))?;
        Some(&error[start..start + len])
    };
    let Some(code) = tag("Code") else {
        return format!("{error}{}", configuration_hint(error));
    };
    let message = tag("Message").unwrap_or("");
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS S3".into());
    let what_to_do = match code {
        "NoSuchBucket" => format!(
            "no bucket of this name at {endpoint}: check the bucket's name (and AWS_ENDPOINT_URL, \
             AWS_REGION for a store that is not AWS)"
        ),
        "AccessDenied" | "AllAccessDisabled" => {
            "the credentials may not list or read this bucket: check its policy and \
             AWS_ACCESS_KEY_ID"
                .into()
        }
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" => {
            "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into()
        }
        "PermanentRedirect" | "AuthorizationHeaderMalformed" => {
            "the bucket is in another region: set AWS_REGION to it".into()
        }
        _ => format!("the store at {endpoint} refused the request"),
    };
    format!("{code} ({message}): {what_to_do}")
}

/// What to set when an error looks like a missing setting rather than a store's failure.
fn configuration_hint(error: &str) -> &'static str {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if !set("AWS_ACCESS_KEY_ID") && !set("AWS_WEB_IDENTITY_TOKEN_FILE") {
        "; no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (without them the client \
         asks the EC2 instance metadata service)"
    } else if error.contains("URL scheme is not allowed")
        || error.contains("http://") && !set("AWS_ALLOW_HTTP")
    {
        "; for a plain-HTTP endpoint (AWS_ENDPOINT_URL=http://...) set AWS_ALLOW_HTTP=true"
    } else if !set("AWS_REGION") && !set("AWS_DEFAULT_REGION") {
        "; is AWS_REGION set (and AWS_ENDPOINT_URL, for a store that is not AWS)?"
    } else {
        ""
    }
}

/// The objects an input URL names: every object under it as a prefix (`s3://b/logs` lists
/// `logs/...`), in key order, or else the one object with exactly that key. Names nothing: an
/// error. (Listing first: some servers answer a `HEAD` of a prefix with an error, not 404.)
pub fn list(url: &str) -> Result<Vec<ObjectInfo>, InputError> {
    let mut objects = Vec::new();
    for_each(url, &mut |o| {
        objects.push(o);
        Ok::<(), InputError>(())
    })?;
    Ok(objects)
}

/// True when listing the input URL `argument` lists the object `url` (`s3://BUCKET/KEY`): the
/// whole bucket, the key itself, or a key under it as a prefix (`logs` lists `logs/...`).
pub fn lists(argument: &str, url: &str) -> bool {
    let (Some(a), Some(u)) = (argument.strip_prefix(SCHEME), url.strip_prefix(SCHEME)) else {
        return false;
    };
    let (a_bucket, a_key) = a.split_once('/').unwrap_or((a, ""));
    let (u_bucket, u_key) = u.split_once('/').unwrap_or((u, ""));
    let prefix = a_key.trim_end_matches('/');
    a_bucket == u_bucket
        && (prefix.is_empty()
            || u_key == a_key
            || u_key
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/')))
}

/// Checks that `url` names at least one object, reading no more than its first listing page.
pub fn check(url: &str) -> Result<(), InputError> {
    // Stopped at the first object: its page is all that was read.
    match for_each(url, &mut |_| Err(Listed::Stopped)) {
        Ok(()) | Err(Listed::Stopped) => Ok(()),
        Err(Listed::Failed(e)) => Err(e),
    }
}

/// Why [`check`]'s listing ended.
enum Listed {
    Stopped,
    Failed(InputError),
}

impl From<InputError> for Listed {
    fn from(e: InputError) -> Listed {
        Listed::Failed(e)
    }
}

/// Hands every object `url` names to `f` as its listing page arrives, in key order (S3 lists keys
/// in byte order): a prefix of millions of objects is planned while it is listed, and never held
/// whole. Names nothing: an error, before `f` is called.
pub fn for_each<E: From<InputError>>(
    url: &str,
    f: &mut dyn FnMut(ObjectInfo) -> Result<(), E>,
) -> Result<(), E> {
    let path = PathBuf::from(url);
    let (bucket, key) = split_url(&path)?;
    let client = bucket_client(&path, &bucket)?;
    let bucket_url = |location: &ObjectPath| PathBuf::from(format!("{SCHEME}{bucket}/{location}"));
    let info = |meta: object_store::ObjectMeta| ObjectInfo {
        url: bucket_url(&meta.location),
        size: meta.size,
        version: meta.e_tag,
    };
    let prefix = ObjectPath::from(key.trim_end_matches('/'));
    let prefix = (!key.is_empty()).then_some(&prefix);
    let mut listing = client.list(prefix);
    let mut any = false;
    while let Some(meta) = block_on(listing.next())? {
        let meta = meta.map_err(|e| input_error(&path, None, e))?;
        any = true;
        f(info(meta))?;
    }
    if !any && !key.is_empty() && !key.ends_with('/') {
        match block_on(client.head(&ObjectPath::from(key.as_str())))? {
            Ok(meta) => return f(info(meta)),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(input_error(&path, None, e).into()),
        }
    }
    if !any {
        let detail = if key.is_empty() {
            format!("bucket '{bucket}' is there but holds no object")
        } else {
            format!(
                "bucket '{bucket}' has no object whose key is or starts with '{key}': check the \
                 key (`s3://BUCKET/PREFIX` counts every object whose key starts with PREFIX)"
            )
        };
        return Err(InputError::NoObjects {
            url: url.to_string(),
            detail,
        }
        .into());
    }
    Ok(())
}

/// One range of one object to read: its URL, version and bytes.
#[derive(Debug, Clone)]
pub struct RangeRequest {
    /// `s3://BUCKET/KEY`.
    pub url: PathBuf,
    /// The version planned (an ETag); None reads whatever is there.
    pub version: Option<String>,
    /// The bytes wanted.
    pub range: Range<u64>,
}

/// Reads every request, [`CONCURRENT_READS`] at a time (long ranges as concurrent chunks of
/// [`READ_CHUNK`]): one result per request, in order. Each asks for its planned version, so an
/// object deleted or replaced since planning fails alone, by name.
pub fn read_all(requests: Vec<RangeRequest>) -> ReadResults {
    read_in_background(requests).wait()
}

/// The bytes of each of a list of reads, in order.
pub type ReadResults = Vec<Result<Vec<u8>, InputError>>;

/// Reads started by [`read_in_background`]: [`Reads::wait`] for their bytes.
pub struct Reads {
    requests: Vec<RangeRequest>,
    task: Result<tokio::task::JoinHandle<ReadResults>, InputError>,
}

/// Starts [`read_all`]'s reads on the object runtime and returns at once, so a worker reads its
/// next task's objects while it counts the current one.
pub fn read_in_background(requests: Vec<RangeRequest>) -> Reads {
    let task = stores().map(|stores| {
        let owned = requests.clone();
        stores.runtime.spawn(async move { fetch_all(&owned).await })
    });
    Reads { requests, task }
}

impl Reads {
    /// The bytes of every request, in order (blocks until they are all read).
    pub fn wait(self) -> ReadResults {
        let failed_all = |reason: String, requests: &[RangeRequest]| {
            requests
                .iter()
                .map(|r| {
                    Err(InputError::ObjectStore {
                        path: r.url.clone(),
                        reason: reason.clone(),
                    })
                })
                .collect()
        };
        match self.task {
            Err(e) => failed_all(e.to_string(), &self.requests),
            Ok(handle) => match block_on(handle) {
                Ok(Ok(results)) => results,
                Ok(Err(e)) => failed_all(format!("the read was lost: {e}"), &self.requests),
                Err(e) => failed_all(e.to_string(), &self.requests),
            },
        }
    }
}

async fn fetch_all(requests: &[RangeRequest]) -> ReadResults {
    // Each request as chunks, so one large range keeps several connections busy too.
    let mut chunks: Vec<(usize, Range<u64>)> = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let mut at = r.range.start;
        loop {
            let end = (at + READ_CHUNK).min(r.range.end);
            chunks.push((i, at..end));
            at = end;
            if at >= r.range.end {
                break;
            }
        }
    }
    let fetched: Vec<(usize, Result<bytes::Bytes, InputError>)> = futures::stream::iter(chunks)
        .map(|(i, range)| async move { (i, get(&requests[i], range).await) })
        .buffered(CONCURRENT_READS)
        .collect()
        .await;
    let mut out: ReadResults = requests
        .iter()
        .map(|r| Ok(Vec::with_capacity((r.range.end - r.range.start) as usize)))
        .collect();
    // Chunks come back in order, so each request's bytes are appended in order.
    for (i, chunk) in fetched {
        let slot = &mut out[i];
        match (chunk, slot.as_mut()) {
            (Ok(bytes), Ok(buf)) => buf.extend_from_slice(&bytes),
            (Err(e), Ok(_)) => *slot = Err(e),
            (_, Err(_)) => {}
        }
    }
    out
}

/// One ranged GET of the planned version; a short reply is a changed object. The client retries
/// what it knows to be transient; a transport error it gives up on early (a connection reset
/// before the reply, which it classes as unknown) is tried again here, with the same backoff, until
/// the retry budget is spent.
async fn get(request: &RangeRequest, range: Range<u64>) -> Result<bytes::Bytes, InputError> {
    let url = request.url.as_path();
    let (bucket, key) = split_url(url)?;
    if range.is_empty() {
        return Ok(bytes::Bytes::new());
    }
    let client = bucket_client(url, &bucket)?;
    let version = request.version.as_deref();
    let budget = Duration::from_millis(RETRY_BUDGET_MS.load(Ordering::Relaxed));
    let deadline = tokio::time::Instant::now() + budget;
    let mut delay = Duration::from_millis(50);
    loop {
        let attempt = async {
            let options = GetOptions {
                if_match: request.version.clone(),
                range: Some(GetRange::Bounded(range.clone())),
                ..GetOptions::default()
            };
            let result = client
                .get_opts(&ObjectPath::from(key.as_str()), options)
                .await?;
            let size = result.meta.size;
            Ok::<_, object_store::Error>((size, result.bytes().await?))
        };
        match attempt.await {
            Ok((size, bytes)) => {
                if bytes.len() as u64 != range.end - range.start {
                    return Err(InputError::Changed {
                        path: url.to_path_buf(),
                        size,
                        start: range.start,
                        end: range.end,
                    });
                }
                return Ok(bytes);
            }
            Err(e) if is_transport(&e) && tokio::time::Instant::now() + delay < deadline => {
                tracing::debug!("{}: {e}; retrying in {delay:?}", url.display());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(input_error(url, version, e)),
        }
    }
}

/// An error of the connection rather than an answer of the store (which says what it means:
/// missing, changed, refused).
fn is_transport(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::Generic { .. }) && {
        let text = err.to_string();
        text.contains("HTTP error") || text.contains("error sending request")
    }
}

/// Reads bytes `start..end` of the object at `url` (its planned `version`) into `buf`.
pub fn read_range(
    url: &Path,
    version: Option<&str>,
    start: u64,
    end: u64,
    buf: &mut Vec<u8>,
) -> Result<(), InputError> {
    let mut results = read_all(vec![RangeRequest {
        url: url.to_path_buf(),
        version: version.map(str::to_string),
        range: start..end,
    }]);
    *buf = results.pop().unwrap_or_else(|| Ok(Vec::new()))?;
    Ok(())
}

/// A planned object read front to back (and sought in, to find cut points), in chunks of
/// [`READ_CHUNK`] that each ask for the planned version: what splitting large objects at
/// whitespace or between CSV records reads, exactly as it reads a local file.
pub struct ObjectReader {
    url: PathBuf,
    version: Option<String>,
    size: u64,
    at: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
}

impl ObjectReader {
    /// A reader of the object at `url`, `size` bytes long in its `version`.
    pub fn new(url: &Path, version: Option<&str>, size: u64) -> ObjectReader {
        ObjectReader {
            url: url.to_path_buf(),
            version: version.map(str::to_string),
            size,
            at: 0,
            buffer: Vec::new(),
            buffer_start: 0,
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.size || out.is_empty() {
            return Ok(0);
        }
        let buffered = self.buffer_start..self.buffer_start + self.buffer.len() as u64;
        if !buffered.contains(&self.at) {
            let end = (self.at + READ_CHUNK).min(self.size);
            read_range(
                &self.url,
                self.version.as_deref(),
                self.at,
                end,
                &mut self.buffer,
            )
            .map_err(std::io::Error::other)?;
            self.buffer_start = self.at;
        }
        let from = (self.at - self.buffer_start) as usize;
        let n = out.len().min(self.buffer.len() - from);
        out[..n].copy_from_slice(&self.buffer[from..from + n]);
        self.at += n as u64;
        Ok(n)
    }
}

impl Seek for ObjectReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.at.checked_add_signed(d),
        };
        self.at = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::lists;

    #[test]
    fn an_argument_lists_its_bucket_its_key_and_what_is_under_it_as_a_prefix() {
        assert!(lists("s3://b", "s3://b/x/y"));
        assert!(lists("s3://b/logs", "s3://b/logs/2024/a.txt"));
        assert!(lists("s3://b/logs/", "s3://b/logs/a.txt"));
        assert!(lists("s3://b/logs/a.txt", "s3://b/logs/a.txt"));
        assert!(!lists("s3://b/logs", "s3://b/logs2/a.txt"));
        assert!(!lists("s3://b/logs", "s3://c/logs/a.txt"));
        assert!(!lists("/local/logs", "s3://b/logs/a.txt"));
    }

    use super::*;

    #[test]
    fn object_urls_split_into_bucket_and_key() {
        assert!(is_object(Path::new("s3://b/k")));
        assert!(!is_object(Path::new("/s3://b/k")));
        assert_eq!(
            split_url(Path::new("s3://bucket/a/b.txt")).expect("url"),
            ("bucket".to_string(), "a/b.txt".to_string())
        );
        assert_eq!(
            split_url(Path::new("s3://bucket")).expect("url"),
            ("bucket".to_string(), String::new())
        );
        let err = split_url(Path::new("s3:///key")).expect_err("no bucket");
        assert!(err.to_string().contains("no bucket"), "{err}");
    }
}
