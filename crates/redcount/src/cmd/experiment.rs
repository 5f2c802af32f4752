//! `redcount experiment latency`, `partitions` and `hosts`.

use std::process::ExitCode;

use anyhow::Context;
use redcount_lab::experiment::{latency_experiment, ExperimentOptions};
use redcount_lab::partitions::{partition_experiment, PartitionOptions};

use crate::cli::{HostsExperimentArgs, LatencyExperimentArgs, PartitionExperimentArgs};

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

pub fn partitions(args: PartitionExperimentArgs) -> anyhow::Result<ExitCode> {
    let options = PartitionOptions {
        out_dir: args.out_dir,
        duration: args.duration,
        seed: args.seed,
        files: args.files.max(10),
        exe: std::env::current_exe().context("cannot find the redcount executable")?,
    };
    let report = partition_experiment(&options)?;
    println!("wrote {}", report.display());
    Ok(ExitCode::SUCCESS)
}

pub fn hosts(args: HostsExperimentArgs) -> anyhow::Result<ExitCode> {
    let source = if args.source.is_empty() {
        vec![super::bench::default_source()?]
    } else {
        args.source
    };
    let options = redcount_lab::bench::BenchOptions {
        source,
        workers: vec![2],
        small_files: args.small_files,
        large_mb: args.large_mb,
        dir: None,
        worker_exe: std::env::current_exe().context("cannot find the redcount executable")?,
        compare_exe: None,
    };
    let report = redcount_lab::hosts_experiment::hosts_experiment(
        &options,
        args.runs.max(1),
        &args.out_dir,
    )?;
    println!("wrote {}", report.display());
    Ok(ExitCode::SUCCESS)
}
