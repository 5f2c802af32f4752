//! `redcount worker`.

use std::io::Write;
use std::process::ExitCode;

use redcount_worker::run_worker;

use crate::cli::WorkerArgs;

pub fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let url = super::required_url(&args.redis)?;
    // Ctrl-C or SIGTERM: the worker leaves the job at its next step instead of dying mid-call.
    let _ = super::run::interrupt_flag();
    let report = match run_worker(&url, &args.job, &args.options()) {
        Ok(report) => report,
        // Out of memory is not this worker's failure, and another one would fail alike: say so in
        // the exit status, so a driver stops instead of starting workers again.
        Err(err)
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<redcount_protocol::Error>())
                .any(redcount_protocol::Error::is_out_of_memory) =>
        {
            eprintln!("error: {err:#}");
            return Ok(ExitCode::from(redcount_worker::OUT_OF_MEMORY_EXIT as u8));
        }
        Err(err) => return Err(err),
    };
    // On stdout: the one line a person who started this worker gets (a driver's workers have
    // their stdout closed, so `run` prints nothing extra).
    let _ = writeln!(
        std::io::stdout(),
        "worker {}: job '{}' is over; this worker committed {} tasks in {} commits ({} already \
         committed by another worker, {} inputs failed)",
        report.name,
        args.job,
        report.tasks_committed,
        report.commits,
        report.duplicates,
        report.failed
    );
    Ok(ExitCode::SUCCESS)
}
