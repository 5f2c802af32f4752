//! `redcount experiment latency`.

use std::process::ExitCode;

use anyhow::Context;
use redcount_lab::experiment::{latency_experiment, ExperimentOptions};

use crate::cli::LatencyExperimentArgs;

pub fn latency(args: LatencyExperimentArgs) -> anyhow::Result<ExitCode> {
    let source = if args.source.is_empty() {
        vec![super::bench::default_source()?]
    } else {
        args.source
    };
    let options = ExperimentOptions {
        out_dir: args.out_dir,
        source,
        workers: args.workers.max(1),
        rates: args.rates,
        duration: args.duration,
        leases: args.leases,
        plot_format: args.plot_format,
        worker_exe: std::env::current_exe()
            .context("cannot find the redcount executable to start workers")?,
    };
    let report = latency_experiment(&options)?;
    println!("wrote {}", report.display());
    Ok(ExitCode::SUCCESS)
}
