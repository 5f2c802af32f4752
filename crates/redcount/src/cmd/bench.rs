//! `redcount bench`.

use std::process::ExitCode;

use anyhow::Context;
use redcount_lab::bench::{
    bench as run_bench, bench_aggregation, bench_churn, bench_coordinator, bench_hosts,
    bench_instant, bench_kernel, bench_object_store, bench_raft, bench_raft_reads, bench_seed,
    bench_soak, BenchOptions,
};

use crate::cli::BenchArgs;

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let source = if args.source.is_empty() {
        vec![default_source()?]
    } else {
        args.source
    };
    let options = BenchOptions {
        source,
        workers: args.workers,
        small_files: args.small_files,
        large_mb: args.large_mb,
        dir: args.dir,
        worker_exe: std::env::current_exe()
            .context("cannot find the redcount executable to start workers")?,
        compare_exe: args.compare_exe,
    };
    if args.instant {
        bench_instant(&options, args.runs.max(1), args.tiny_files)?;
    } else if args.kernel {
        bench_kernel(&options, args.runs.max(1))?;
    } else if args.churn {
        bench_churn(&options, args.runs.max(1))?;
    } else if args.object_store {
        bench_object_store(&options, args.runs.max(1))?;
    } else if let Some(python) = &args.seed {
        bench_seed(&options, args.runs.max(1), python)?;
    } else if args.soak {
        bench_soak(&options, args.minutes, args.rate)?;
    } else if args.hosts {
        bench_hosts(&options, args.runs.max(1))?;
    } else if args.aggregation {
        bench_aggregation(&options, args.runs.max(1))?;
    } else if args.raft_reads {
        bench_raft_reads(&options, args.runs.max(1))?;
    } else if args.raft {
        bench_raft(&options)?;
    } else if args.coordinator {
        bench_coordinator(&options)?;
    } else {
        run_bench(&options)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// corpus/sotu, found from the working directory or next to the source tree this binary was built from.
pub fn default_source() -> anyhow::Result<String> {
    let candidates = [
        std::path::PathBuf::from("corpus/sotu"),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/sotu"),
    ];
    candidates
        .iter()
        .find(|p| p.is_dir())
        .map(|p| p.display().to_string())
        .context("no sample corpus found (corpus/sotu); pass --source FILES")
}
