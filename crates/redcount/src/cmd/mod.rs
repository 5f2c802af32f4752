//! One function per subcommand; each turns flags into library calls and an exit status.

#[cfg(feature = "lab")]
mod bench;
mod cluster;
#[cfg(feature = "lab")]
mod experiment;
mod inspect;
mod jobs;
mod raft;
mod run;
mod stream;
mod ui;
mod worker;

use std::process::ExitCode;

use anyhow::Context;

#[cfg(feature = "lab")]
use crate::cli::ExperimentCommand;
use crate::cli::{Command, RedisArg};

pub use run::terminated;

/// Runs a subcommand.
pub fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Stream(args) => stream::stream(args),
        Command::Worker(args) => worker::worker(args),
        Command::Status(args) => inspect::status(args),
        Command::Jobs(args) => jobs::jobs(args),
        Command::Top(args) => inspect::top(args),
        Command::Counts(args) => inspect::counts(args),
        Command::Latency(args) => inspect::latency(args),
        Command::Ui(args) => ui::ui(args),
        #[cfg(feature = "lab")]
        Command::Bench(args) => bench::bench(args),
        #[cfg(not(feature = "lab"))]
        Command::Bench(_) => Err(lab_missing("bench")),
        Command::Cluster(command) => cluster::cluster(command),
        Command::RaftNode(args) => raft::raft_node(args),
        #[cfg(feature = "lab")]
        Command::Experiment(ExperimentCommand::Latency(args)) => experiment::latency(args),
        #[cfg(feature = "lab")]
        Command::Experiment(ExperimentCommand::Partitions(args)) => experiment::partitions(args),
        #[cfg(feature = "lab")]
        Command::Experiment(ExperimentCommand::Hosts(args)) => experiment::hosts(args),
        #[cfg(not(feature = "lab"))]
        Command::Experiment(_) => Err(lab_missing("experiment")),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = crate::cli::Cli::command();
            // Into memory first: clap_complete panics on a write error (`... | head`), while
            // ours is a broken pipe main treats as the reader's choice.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "redcount", &mut script);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Benchmarks and experiments are the lab's (`redcount-lab`), not the product's: a binary built
/// without the `lab` feature keeps their flags (so a command line from docs/BENCHMARKS.md parses)
/// and says how to get them.
#[cfg(not(feature = "lab"))]
fn lab_missing(command: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "`redcount {command}` is part of the lab, and this binary was built without it: build it \
         with `cargo build --release --features lab` and run target/release/redcount {command} again"
    )
}

/// The Redis URL a command that joins an existing job must have.
fn required_url(redis: &RedisArg) -> anyhow::Result<String> {
    redis
        .redis
        .clone()
        .context("no Redis given: pass --redis redis://[:password@]host:port or set REDIS_URL")
}
