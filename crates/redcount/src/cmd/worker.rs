//! `redcount worker`.

use std::process::ExitCode;

use redcount_worker::run_worker;

use crate::cli::WorkerArgs;

pub fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let url = super::required_url(&args.redis)?;
    let report = run_worker(&url, &args.job, &args.options())?;
    tracing::info!(
        "{}: job '{}' finished; committed {} tasks in {} commits, {} duplicates, {} failed",
        report.name,
        args.job,
        report.tasks_committed,
        report.commits,
        report.duplicates,
        report.failed
    );
    Ok(ExitCode::SUCCESS)
}
