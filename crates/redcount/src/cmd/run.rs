//! `redcount run`, and the job flags it shares with `stream`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use redcount_driver::report::Summary;
use redcount_driver::{JobOptions, RunOptions, EXIT_INPUTS_FAILED};

use crate::cli::{JobArgs, RunArgs};

pub fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let interrupted = interrupt_flag();
    let json = args.job.json;
    // Kept until the job is over: its workers read the spooled standard input.
    let _stdin = spool_stdin(&mut args.job.inputs)?;
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

/// The input `-` is standard input: copied into a temporary file (workers are other processes,
/// and read inputs by path and byte range), which replaces `-` among the inputs and is removed
/// when the returned guard is dropped.
fn spool_stdin(inputs: &mut [String]) -> anyhow::Result<Option<tempfile::TempPath>> {
    use std::io::IsTerminal;
    if !inputs.iter().any(|i| i == "-") {
        return Ok(None);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        anyhow::bail!(
            "the input '-' is standard input, which is a terminal here: pipe text in \
             (`zcat logs.gz | redcount run -`), or name files"
        );
    }
    let mut file = tempfile::Builder::new()
        .prefix("redcount-stdin-")
        .suffix(".txt")
        .tempfile()
        .context("cannot create a temporary file for standard input (is TMPDIR writable?)")?;
    std::io::copy(&mut stdin.lock(), &mut file)
        .context("cannot copy standard input into a temporary file (is TMPDIR full?)")?;
    let path = file.into_temp_path();
    for input in inputs.iter_mut().filter(|i| *i == "-") {
        *input = path.display().to_string();
    }
    Ok(Some(path))
}

/// Set by SIGTERM (besides the stop flag), so the exit status can say which signal stopped us.
static TERMINATED: std::sync::LazyLock<Arc<AtomicBool>> = std::sync::LazyLock::new(Arc::default);

/// Set on Ctrl-C, SIGTERM or SIGHUP: the driver stops waiting, calls retrying an unreachable Redis
/// give up at once, then workers and the private Redis are stopped.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let stop = redcount_protocol::stop_flag();
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    let _ = signal_hook::flag::register(SIGTERM, TERMINATED.clone());
    stop
}

/// True when SIGTERM stopped the process (exit 143 rather than 130).
pub fn terminated() -> bool {
    TERMINATED.load(Ordering::SeqCst)
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
    let ui = args.ui;
    let mut options = args.options(exe);
    if let Some(listen) = ui {
        options.on_open = Some(super::ui::serve_job_dashboard(listen));
    }
    Ok(options)
}
