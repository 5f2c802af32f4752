//! `redcount run`, and the job flags it shares with `stream`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use redcount_driver::report::Summary;
use redcount_driver::{JobOptions, RunOptions, EXIT_INPUTS_FAILED};

use crate::cli::{JobArgs, RunArgs};

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let interrupted = interrupt_flag();
    let json = args.job.json;
    let options = RunOptions {
        common: job_options(args.job)?,
        split_bytes: args.split_bytes,
        no_pack: args.no_pack,
    };
    let summary = redcount_driver::run(&options, &interrupted)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        summary.print(&mut std::io::stdout().lock())?;
    }
    Ok(exit_code(&summary))
}

/// Set on Ctrl-C: the driver stops waiting, then workers and the private Redis are stopped.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed));
    interrupted
}

/// 0, or 3 when some inputs could not be processed.
pub fn exit_code(summary: &Summary) -> ExitCode {
    if summary.inputs_failed > 0 {
        ExitCode::from(EXIT_INPUTS_FAILED as u8)
    } else {
        ExitCode::SUCCESS
    }
}

/// The driver's options from the shared job flags.
pub fn job_options(args: JobArgs) -> anyhow::Result<JobOptions> {
    let exe =
        std::env::current_exe().context("cannot find the redcount executable to start workers")?;
    Ok(args.options(exe))
}
