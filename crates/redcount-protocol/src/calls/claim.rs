//! `rc_claim` and `rc_renew` (library/claim.lua): tasks handed out under a lease, and leases
//! extended.

use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use redis::Value;

use super::{arg, items, Call, MAX_ARG};
use crate::reply;
use crate::spec::millis;
use crate::task::{Format, Task};
use crate::Job;
use crate::Now;

/// What a worker asks of `claim`.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// The claiming worker's consumer name.
    pub worker: &'a str,
    /// Lease given to every task handed out.
    pub lease: Duration,
    /// Most tasks handed out.
    pub max_tasks: u64,
    /// Byte budget for new tasks (one task always fits).
    pub max_bytes: u64,
    /// Deliveries after which an expiring task is given up.
    pub max_attempts: u32,
    /// Workers heard from within this window count as live (for the fair share).
    pub live_window: Duration,
    /// When idle, take over a task running longer than this many times the recent p90 (0: never).
    pub speculate_factor: f64,
    /// ... and longer than this.
    pub speculate_min: Duration,
}

/// What `claim` handed out, and what to wait for when it handed out nothing.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The tasks handed out (none when there was nothing to do).
    pub tasks: Vec<Task>,
    /// The job is finished: sealed, all delivered, none pending, done + dead = tasks.
    pub finished: bool,
    /// Time until the earliest lease expires (on the coordinator's lease clock), when an idle
    /// worker should look again.
    pub next_expiry: Option<Duration>,
    /// Newest task id and newest done id, to block on with [`Job::wait_for_change`].
    pub last_task_id: String,
    /// Newest done id, to block on with [`Job::wait_for_change`].
    pub last_done_id: String,
}

/// `rc_claim`: expired leases first, then new tasks, then maybe a straggler's.
pub struct Claim<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// What the worker asks for.
    pub request: &'a ClaimRequest<'a>,
    /// Unique to this call of this worker: the same token again is the same call retried after
    /// its reply was lost, and gets the same tasks.
    pub token: String,
}

impl Call for Claim<'_> {
    const FUNCTION: &'static str = "rc_claim";
    type Reply = Claimed;

    fn args(&self) -> Vec<Vec<u8>> {
        let r = self.request;
        vec![
            self.now.arg(),
            r.worker.as_bytes().to_vec(),
            arg(millis(r.lease)),
            arg(r.max_tasks.min(MAX_ARG)),
            arg(r.max_bytes.min(MAX_ARG)),
            arg(r.max_attempts),
            arg(millis(r.live_window)),
            arg(r.speculate_factor),
            arg(r.speculate_min.as_millis()),
            self.token.as_bytes().to_vec(),
        ]
    }

    fn reply(&self, value: Value) -> Result<Claimed, String> {
        let items = items(value)?;
        if items.len() < 4 {
            return Err(format!("{items:?}"));
        }
        let mut tasks = Vec::with_capacity(items.len() - 4);
        for item in &items[4..] {
            let task = match item {
                Value::Array(f) => task(f),
                _ => None,
            };
            tasks.push(task.ok_or_else(|| format!("task {item:?}"))?);
        }
        let expiry = reply::int(&items[1]).unwrap_or(-1);
        Ok(Claimed {
            tasks,
            finished: reply::int(&items[0]) == Some(1),
            next_expiry: u64::try_from(expiry).ok().map(Duration::from_millis),
            last_task_id: reply::string(&items[2]).unwrap_or_else(|| "0-0".into()),
            last_done_id: reply::string(&items[3]).unwrap_or_else(|| "0-0".into()),
        })
    }
}

/// One task of a claim's reply.
fn task(f: &[Value]) -> Option<Task> {
    let [id, path, start, end, fmt, injected, attempts, more, solo, version, charged] = f else {
        return None;
    };
    let version = reply::string(version)?;
    Some(Task {
        id: reply::string(id)?,
        path: PathBuf::from(std::ffi::OsString::from_vec(reply::bytes(path)?)),
        start: reply::uint(start)?,
        end: reply::uint(end)?,
        format: Format::parse(&reply::string(fmt)?)?,
        version: (!version.is_empty()).then_some(version),
        more: crate::task::decode_more(&reply::bytes(more)?)?,
        injected_ms: reply::uint(injected)?,
        attempts: u32::try_from(reply::uint(attempts)?).ok()?,
        solo: reply::int(solo)? == 1,
        charged: u32::try_from(reply::uint(charged)?).ok()?,
    })
}

/// `rc_renew`: extends the leases `worker` still holds among `ids`.
pub struct Renew<'a> {
    /// The coordinator's time.
    pub now: Now,
    /// The renewing worker.
    pub worker: &'a str,
    /// The new lease.
    pub lease: Duration,
    /// The tasks it believes it holds.
    pub ids: &'a [String],
}

impl Call for Renew<'_> {
    const FUNCTION: &'static str = "rc_renew";
    /// The ids whose leases were extended.
    type Reply = Vec<String>;

    fn args(&self) -> Vec<Vec<u8>> {
        let mut args = vec![
            self.now.arg(),
            self.worker.as_bytes().to_vec(),
            arg(millis(self.lease)),
        ];
        args.extend(self.ids.iter().map(|id| id.as_bytes().to_vec()));
        args
    }

    fn reply(&self, value: Value) -> Result<Vec<String>, String> {
        Ok(items(value)?.iter().filter_map(reply::string).collect())
    }
}

impl Job {
    /// Claims tasks for a worker (expired leases first, then new ones, then maybe a straggler's).
    pub fn claim(&mut self, now: impl Into<Now>, request: &ClaimRequest) -> crate::Result<Claimed> {
        let claim = self.claim_call(now.into(), request);
        self.send(&claim)
    }

    /// The `rc_claim` call of `request`, with this handle's next token (each claim needs its own:
    /// a repeated token is taken for the same call retried).
    pub fn claim_call<'a>(&mut self, now: Now, request: &'a ClaimRequest<'a>) -> Claim<'a> {
        self.claims += 1;
        Claim {
            now,
            request,
            // Unique per call; the link re-sends the same bytes when it retries after a lost reply.
            token: format!("{}-{}", self.instance, self.claims - 1),
        }
    }

    /// Extends the leases `worker` still holds among `ids`; returns those.
    pub fn renew(
        &mut self,
        now: impl Into<Now>,
        worker: &str,
        lease: Duration,
        ids: &[String],
    ) -> crate::Result<Vec<String>> {
        self.send(&Renew {
            now: now.into(),
            worker,
            lease,
            ids,
        })
    }
}
