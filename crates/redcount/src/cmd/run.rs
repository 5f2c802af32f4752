//! `redcount run`, and the job flags it shares with `stream`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use redcount_driver::embedded::Durability;
use redcount_driver::plan::FormatChoice;
use redcount_driver::report::Summary;
use redcount_driver::session::{available_cpus, ChaosPoint};
use redcount_driver::{JobOptions, RunOptions, EXIT_INPUTS_FAILED};

use crate::cli::{FormatArg, JobArgs, RunArgs, TokenizerArg};

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let interrupted = interrupt_flag();
    let json = args.job.json;
    let options = RunOptions {
        common: job_options(args.job)?,
        split_bytes: args.split_bytes,
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
    let mut common = JobOptions::new(
        args.inputs,
        args.workers.unwrap_or_else(available_cpus),
        std::env::current_exe().context("cannot find the redcount executable to start workers")?,
    );
    common.redis = args.redis.redis;
    common.job = args.job;
    common.lease_ms = args.lease_ms.as_millis().max(1) as u64;
    common.max_attempts = args.max_attempts.max(1);
    common.format = match args.format {
        FormatArg::Auto => FormatChoice::Auto,
        FormatArg::Text => FormatChoice::Text,
        FormatArg::Csv => FormatChoice::Csv,
    };
    common.csv_column = args.csv_column;
    common.tokenizer = match args.tokenizer {
        TokenizerArg::Whitespace => "whitespace",
        TokenizerArg::Letters => "letters",
    }
    .to_string();
    common.lowercase = args.lowercase;
    common.dictionary = args.dictionary;
    common.top = args.top;
    common.out = args.out;
    common.progress = !args.no_progress && !args.json;
    common.durability = Durability::parse(&args.durability).unwrap_or(Durability::None);
    common.checkpoint = args.checkpoint_ms;
    common.sync_replicas = args.sync_replicas;
    common.worker_args.extend([
        "--speculate-factor".into(),
        args.speculate_factor.max(0.0).to_string(),
    ]);
    common.chaos_every = args.chaos_redis;
    common.chaos_at = args
        .chaos_redis_at
        .iter()
        .map(|p| {
            if p == "enqueue" {
                ChaosPoint::Enqueue
            } else {
                ChaosPoint::Finish
            }
        })
        .collect();
    if let Some(slow) = args.worker_slow {
        common
            .worker_args
            .extend(["--slow".to_string(), format!("{}ms", slow.as_millis())]);
    }
    Ok(common)
}
