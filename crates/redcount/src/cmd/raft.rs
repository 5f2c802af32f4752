//! `redcount raft-node` (one replica of a Raft group) and the Raft side of `redcount cluster`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use redcount_raft::NodeConfig;
use redcount_server::raft_group::{group_down as stop_group, group_up as start_group, Group};

use crate::cli::RaftNodeArgs;

pub fn raft_node(args: RaftNodeArgs) -> anyhow::Result<ExitCode> {
    let peers = parse_members("--peers", &args.peers)?;
    let mut config = NodeConfig::new(args.id, args.dir, args.listen, peers);
    if let Some(dial) = &args.dial {
        config.dial = parse_members("--dial", dial)?;
    }
    config.init = args.init;
    config.snapshot_every = args.snapshot_every.max(10);
    config.unbatched_reads = args.unbatched_reads;
    if let Some(path) = &args.requirepass_file {
        let password = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?;
        config.password = Some(password.trim().to_string());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(redcount_raft::run(config))?;
    Ok(ExitCode::SUCCESS)
}

/// `1=host:port,2=host:port` (the value of `flag`) -> {1: "host:port", ...}.
fn parse_members(flag: &str, text: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .with_context(|| format!("{flag}: '{item}' is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("{flag}: '{id}' is not a node id (a number)"))?;
        if !addr.contains(':') {
            anyhow::bail!("{flag}: '{addr}' is not host:port");
        }
        if peers.insert(id, addr.trim().to_string()).is_some() {
            anyhow::bail!("{flag}: node id {id} is listed twice");
        }
    }
    if peers.is_empty() {
        anyhow::bail!("{flag} lists no node; give them as id=host:port,...");
    }
    Ok(peers)
}

pub fn group_up(dir: &Path, size: usize) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the redcount executable")?;
    let (group, started) = start_group(dir, size, &exe)?;
    match started {
        0 => eprintln!("all {size} nodes of the Raft group in {} already run; use:", dir.display()),
        n if n == size => eprintln!(
            "started a Raft group of {size} nodes in {} (stop it with `redcount cluster down --dir {}`); use:",
            dir.display(),
            dir.display()
        ),
        n => eprintln!(
            "started {n} of the {size} nodes of the Raft group in {} (the others were running); use:",
            dir.display()
        ),
    }
    println!("{}", group.url());
    Ok(ExitCode::SUCCESS)
}

pub fn group_down(dir: &Path) -> anyhow::Result<()> {
    let group = stop_group(dir)?;
    eprintln!("stopped {} raft nodes", group.nodes.len());
    Ok(())
}

pub fn group_status(group: &Group) -> anyhow::Result<ExitCode> {
    println!(
        "{:<4} {:<22} {:<10} {:>6} {:>8} {:>10} {:>10}",
        "id", "address", "role", "term", "leader", "applied", "last log"
    );
    for node in &group.nodes {
        match group.status(node) {
            Some(s) => {
                let get = |k: &str| s.get(k).cloned().unwrap_or_else(|| "?".into());
                println!(
                    "{:<4} {:<22} {:<10} {:>6} {:>8} {:>10} {:>10}",
                    node.id,
                    node.addr,
                    get("role"),
                    get("term"),
                    get("leader"),
                    get("applied_index"),
                    get("last_log_index")
                );
            }
            None => println!("{:<4} {:<22} down", node.id, node.addr),
        }
    }
    Ok(ExitCode::SUCCESS)
}
