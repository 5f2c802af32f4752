//! The `redcount` command: a thin layer over the library crates (see docs/ARCHITECTURE.md).

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // One TLS provider for rediss:// links and https object stores alike.
    redcount_protocol::use_ring_for_tls();
    let cli = cli::Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: raft nodes and workers often log to files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // A raft node's log is read after the fact, next to its peers': it needs the time.
    if matches!(cli.command, cli::Command::RaftNode(_)) {
        logs.init();
    } else {
        logs.without_time().init();
    }
    match cmd::dispatch(cli.command) {
        Ok(code) => code,
        // The reader of our output went away (`redcount counts | head`): its choice, not an
        // error. Everything else (an --out file, the job) is done by the time anything is printed.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // 128 + the signal, as a shell reports a process stopped by Ctrl-C (130) or SIGTERM (143).
            if redcount_protocol::stop_requested() {
                ExitCode::from(if cmd::terminated() { 143 } else { 130 })
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// True when `err` comes from writing to a pipe whose reader has closed it.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
