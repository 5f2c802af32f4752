//! The Redis keys of one job. They share the hash tag `{job}` so a job is one Cluster slot and one
//! Raft state machine.

use crate::Error;

/// The nine keys of a job, passed as KEYS to every library call in this order.
#[derive(Debug, Clone)]
pub struct JobKeys {
    /// Stream of tasks, consumer group `workers`.
    pub tasks: String,
    /// Sorted set: task id -> lease deadline (ms).
    pub leases: String,
    /// Sorted set: word -> count, the result.
    pub counts: String,
    /// Hash: state, totals, counters and the job's spec (`cfg.*`).
    pub meta: String,
    /// Stream: one record per committed task.
    pub done: String,
    /// Stream: tasks given up, with the error.
    pub dead: String,
    /// Hash: task id -> "attempts:claimed_ms:worker" for delivered, unacked tasks.
    pub inflight: String,
    /// Sorted set: worker name -> last time it was heard from (ms).
    pub workers: String,
    /// Stream: fault and operator events (worker killed, straggler ...), for latency plots.
    pub events: String,
    /// `rc:{J}:`, which the keys of partitions extend (see [`JobKeys::result`]).
    prefix: String,
}

/// Every key of job J is `rc:{J}:<suffix>`.
const PREFIX: &str = "rc:{";
const META_SUFFIX: &str = "}:meta";

/// The register of every job of a Redis (`rc_jobs`): a sorted set of job name -> when it was made.
pub const JOBS_KEY: &str = "rc:jobs";

/// A `SCAN MATCH` pattern for the meta hash of every job.
pub(crate) const META_KEY_PATTERN: &str = "rc:{*}:meta";

/// The job whose meta hash is `key`, if it is one.
pub(crate) fn job_of_meta_key(key: &str) -> Option<&str> {
    key.strip_prefix(PREFIX)?.strip_suffix(META_SUFFIX)
}

impl JobKeys {
    /// Keys of job `job`; the name must pass [`validate_job_name`].
    pub fn new(job: &str) -> Result<JobKeys, Error> {
        validate_job_name(job)?;
        let key = |suffix: &str| format!("{PREFIX}{job}}}:{suffix}");
        Ok(JobKeys {
            tasks: key("tasks"),
            leases: key("leases"),
            counts: key("counts"),
            meta: key("meta"),
            done: key("done"),
            dead: key("dead"),
            inflight: key("inflight"),
            workers: key("workers"),
            events: key("events"),
            prefix: key(""),
        })
    }

    /// String: the merged partial-counts blob of partition `p` (library/kernel.lua's `job_key` builds the same names).
    pub fn result(&self, p: u32) -> String {
        format!("{}result:{p}", self.prefix)
    }

    /// String: the top-K blob of partition `p`'s merged result.
    pub fn top(&self, p: u32) -> String {
        format!("{}top:{p}", self.prefix)
    }

    /// Stream: one entry (`1-0`), added when the job ends (finished, cancelled or failed); every
    /// blocking read also reads it from `0-0`, so waiting ends with the job.
    pub fn end(&self) -> String {
        format!("{}end", self.prefix)
    }

    /// String: partial blob `seq` of partition `p`, committed and not yet merged.
    pub fn part(&self, p: u32, seq: &str) -> String {
        format!("{}part:{p}:{seq}", self.prefix)
    }

    /// All keys in the order the library expects them (`K_TASKS`... in library/kernel.lua).
    pub fn all(&self) -> [&str; 9] {
        [
            &self.tasks,
            &self.leases,
            &self.counts,
            &self.meta,
            &self.done,
            &self.dead,
            &self.inflight,
            &self.workers,
            &self.events,
        ]
    }
}

/// Job names go into keys and file names: keep them short and plain.
pub fn validate_job_name(job: &str) -> Result<(), Error> {
    let ok = !job.is_empty()
        && job.len() <= 100
        && job
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::JobName(job.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = JobKeys::new("wc-1").expect("valid name");
        for key in keys.all() {
            assert!(key.starts_with("rc:{wc-1}:"), "{key}");
        }
    }

    #[test]
    fn a_meta_key_names_its_job_and_the_scan_pattern_finds_it() {
        let keys = JobKeys::new("wc-1.a_b").expect("valid name");
        assert_eq!(job_of_meta_key(&keys.meta), Some("wc-1.a_b"));
        assert_eq!(job_of_meta_key(&keys.counts), None);
        assert_eq!(META_KEY_PATTERN.replace('*', "wc-1.a_b"), keys.meta);
    }

    #[test]
    fn names_with_braces_or_spaces_are_refused() {
        for bad in ["", "a}b", "a{b", "a b", &"x".repeat(101)] {
            assert!(validate_job_name(bad).is_err(), "{bad:?}");
        }
    }
}
