//! `rc_claim` and `rc_renew` (library/claim.lua): tasks handed out under a lease, and leases
//! extended.

use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use redis::Value;

use super::{arg, items, Call, MAX_ARG};
use crate::job::{ClaimRequest, Claimed};
use crate::reply;
use crate::spec::millis;
use crate::task::{Format, Task};
use crate::Now;

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
