//! Reading the result of a finished job: the top K, every count for `--out`, and the failed inputs,
//! read between two checks that Redis did not restart and the job is still finished, so a crash right
//! after the last commit cannot make the driver print a partial result.

use redcount_protocol::{DeadTask, Now, Status};

use super::Session;

/// What a finished job produced, read from one consistent state.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// The job's counters when it was read.
    pub status: Status,
    /// The most frequent words, ties in byte order.
    pub top: Vec<(Vec<u8>, u64)>,
    /// Every word (when asked for), count descending then word bytes ascending.
    pub all: Option<Vec<(Vec<u8>, u64)>>,
    /// The inputs given up, with their errors.
    pub failed: Vec<DeadTask>,
}

impl Session {
    /// Reads the result of the job, which `status` saw finished. `Ok(None)`: Redis restarted or the
    /// job changed while it was read, and the caller goes back to waiting.
    pub fn read_result(
        &mut self,
        status: &Status,
        top: usize,
        every_word: bool,
    ) -> anyhow::Result<Option<JobResult>> {
        // The server the status check that saw the job finished was answered by.
        let before = self.server_run.clone();
        self.job.check_result(Now::Coordinator, status.words)?;
        let top = self.job.top(top)?;
        let all = match every_word {
            true => Some(self.job.all_counts()?),
            false => None,
        };
        // What goes to --out must be every word the commits counted, or nothing: a short result
        // is a failed job, never exit 0.
        if let Some(all) = &all {
            let written: u64 = all.iter().map(|(_, n)| n).sum();
            if written != status.words {
                let reason = format!(
                    "the result holds {written} words but the commits counted {}: part of it \
                     was lost (evicted, or deleted by another client); run the job again",
                    status.words
                );
                return Err(self.job.fail_job(Now::Coordinator, &reason).into());
            }
        }
        let failed = self.job.dead_tasks()?;
        let live_window = redcount_protocol::live_window(self.spec.lease.get());
        let after = self.job.status_and_server(Now::Coordinator, live_window);
        let same = matches!(&after, Ok((s, server)) if s.finished && s.commits == status.commits
            && s.run_id == status.run_id && server.run_id == before);
        if !same {
            tracing::warn!(
                "redis restarted while the result was being read: waiting for the job again"
            );
            return Ok(None);
        }
        Ok(Some(JobResult {
            status: status.clone(),
            top,
            all,
            failed,
        }))
    }
}
