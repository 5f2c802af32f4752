//! `redcount worker`.

use std::process::ExitCode;

use redcount_worker::{run_worker, WorkerOptions};

use crate::cli::WorkerArgs;

pub fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let url = super::required_url(&args.redis)?;
    let name = args
        .name
        .unwrap_or_else(redcount_driver::unique_worker_name);
    let mut options = WorkerOptions::new(name.clone());
    options.lease_ms = args.lease_ms.map(|d| d.as_millis().max(1) as u64);
    options.max_attempts = args.max_attempts;
    options.batch_bytes = args.batch_bytes.max(1);
    options.batch_time = args.batch_time;
    options.slow = args.slow.unwrap_or_default();
    options.wait_for_job = args.wait_for_job;
    options.speculate_factor = args.speculate_factor.max(0.0);
    let report = run_worker(&url, &args.job, &options)?;
    tracing::info!(
        "{name}: job '{}' finished; committed {} tasks in {} commits, {} duplicates, {} failed",
        args.job,
        report.tasks_committed,
        report.commits,
        report.duplicates,
        report.failed
    );
    Ok(ExitCode::SUCCESS)
}
