//! `redcount run`, and the job flags it shares with `stream`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::io::Write;

use anyhow::Context;
use redcount_driver::report::Summary;
use redcount_driver::{JobOptions, RunOptions, EXIT_INPUTS_FAILED};

use crate::cli::{JobArgs, RunArgs};

pub fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let interrupted = interrupt_flag();
    let json = args.job.json;
    // Kept until the job is over: its workers read the spooled standard input.
    let _stdin = spool_stdin(&mut args.job.inputs)?;
    if args.plan {
        return show_plan(args);
    }
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

/// `run --plan`: the tasks the inputs would be cut into, as a table (the first 40) or, with
/// `--json`, every task with its ranges.
fn show_plan(args: RunArgs) -> anyhow::Result<ExitCode> {
    use redcount_driver::report::human_bytes;
    let json = args.job.json;
    let options = job_options(args.job)?;
    let files = redcount_input::expand::inputs(&options.inputs)?;
    if files.is_empty() {
        anyhow::bail!("the inputs name no files");
    }
    let (tasks, facts) =
        redcount_driver::plan::plan_batch(&files, &options, args.split_bytes, args.no_pack);
    if json {
        let tasks: Vec<serde_json::Value> = tasks
            .iter()
            .map(|t| {
                let ranges: Vec<serde_json::Value> = t
                    .pieces()
                    .map(|p| {
                        serde_json::json!({
                            "path": redcount_protocol::escape_bytes(p.path.as_os_str().as_encoded_bytes()),
                            "start": p.start,
                            "end": p.end,
                            "format": p.format.as_str(),
                        })
                    })
                    .collect();
                serde_json::json!({ "seq": t.seq, "bytes": t.bytes(), "ranges": ranges })
            })
            .collect();
        let plan = serde_json::json!({
            "files": facts.files,
            "bytes": facts.bytes,
            "split_bytes": facts.split_bytes,
            "packed": facts.packed,
            "tasks": tasks,
        });
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} files, {} -> {} tasks (split size {}{})",
        facts.files,
        human_bytes(facts.bytes),
        facts.tasks,
        human_bytes(facts.split_bytes),
        if facts.packed {
            "; small files packed up to it"
        } else {
            "; one task per small file"
        }
    )?;
    writeln!(
        out,
        "{:>6}  {:>9}  {:>6}  first input",
        "task", "bytes", "files"
    )?;
    const SHOWN: usize = 40;
    for t in tasks.iter().take(SHOWN) {
        let path = redcount_protocol::escape_bytes(t.path.as_os_str().as_encoded_bytes());
        let first = format!("{path} (bytes {}..{})", t.start, t.end);
        writeln!(
            out,
            "{:>6}  {:>9}  {:>6}  {}",
            t.seq,
            human_bytes(t.bytes()),
            1 + t.more.len(),
            first
        )?;
    }
    if tasks.len() > SHOWN {
        writeln!(
            out,
            "... and {} more tasks (--json lists every one)",
            tasks.len() - SHOWN
        )?;
    }
    Ok(ExitCode::SUCCESS)
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
