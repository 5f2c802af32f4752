//! `redcount stream`.

use std::process::ExitCode;

use anyhow::Context;

use redcount_driver::faults::FaultPlan;
use redcount_driver::stream::{
    stream as run_stream, StreamLimit, StreamOptions, STREAM_BATCH_TIME,
};

use super::run::{exit_code, interrupt_flag, job_options};
use crate::cli::StreamArgs;

pub fn stream(args: StreamArgs) -> anyhow::Result<ExitCode> {
    let interrupted = interrupt_flag();
    let json = args.job.json;
    let mut common = job_options(args.job)?;
    common.worker.batch_time = args.batch_time.unwrap_or(STREAM_BATCH_TIME);
    let options = StreamOptions {
        common,
        rate: args.rate,
        batch: args.batch,
        limit: match (args.files, args.duration) {
            (Some(n), _) => StreamLimit::Files(n),
            (None, Some(d)) => StreamLimit::Duration(d),
            (None, None) => StreamLimit::Once,
        },
        latency_out: args.latency_out,
        plot: args.plot,
        plot_log_y: args.log_y,
        faults: FaultPlan {
            kills: args.kill_worker,
            stragglers: args.straggler,
            restart_after: args.restart_workers,
            leader_kills: args.kill_raft_leader,
            raft_group: match args.raft_dir {
                Some(dir) => Some((
                    dir,
                    std::env::current_exe()
                        .context("cannot find the redcount executable to restart raft nodes")?,
                )),
                None => None,
            },
        },
    };
    let summary = run_stream(&options, &interrupted)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        summary.print(&mut std::io::stdout().lock())?;
    }
    Ok(exit_code(&summary.summary))
}
