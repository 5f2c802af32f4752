//! `redcount run`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use redcount_driver::plan::FormatChoice;
use redcount_driver::{run::available_cpus, RunOptions, EXIT_INPUTS_FAILED};

use crate::cli::{FormatArg, RunArgs, TokenizerArg};

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    // Ctrl-C: stop waiting, then workers and the private Redis are stopped on the way out.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed));

    let lease_ms = args.lease_ms.as_millis().max(1) as u64;
    let options = RunOptions {
        inputs: args.inputs,
        workers: args.workers.unwrap_or_else(available_cpus),
        redis: args.redis.redis,
        job: args.job,
        lease_ms,
        max_attempts: args.max_attempts.max(1),
        format: match args.format {
            FormatArg::Auto => FormatChoice::Auto,
            FormatArg::Text => FormatChoice::Text,
            FormatArg::Csv => FormatChoice::Csv,
        },
        csv_column: args.csv_column,
        tokenizer: match args.tokenizer {
            TokenizerArg::Whitespace => "whitespace",
            TokenizerArg::Letters => "letters",
        }
        .to_string(),
        lowercase: args.lowercase,
        dictionary: args.dictionary,
        split_bytes: args.split_bytes,
        top: args.top,
        out: args.out,
        progress: !args.no_progress && !args.json,
        worker_exe: std::env::current_exe()
            .context("cannot find the redcount executable to start workers")?,
        worker_args: Vec::new(),
    };
    let outcome = redcount_driver::run(&options, &interrupted)?;
    let summary = outcome.summary;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        summary.print(&mut std::io::stdout().lock())?;
    }
    Ok(if summary.inputs_failed > 0 {
        ExitCode::from(EXIT_INPUTS_FAILED as u8)
    } else {
        ExitCode::SUCCESS
    })
}
