//! Opening a job: the inputs are checked (a path that names nothing is an error before anything
//! starts), a private Redis is started unless one is given, and the job is created with its spec.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redcount_protocol::{Job, Link, LinkOptions, Now};

use super::repair::CommitLog;
use super::Session;
use crate::checkpoint::Checkpointer;
use crate::embedded::{Durability, EmbeddedRedis};
use crate::JobOptions;

/// The shortest `--chaos-redis` interval: below it the private Redis spends its whole life starting.
const MIN_CHAOS_EVERY: Duration = Duration::from_millis(300);

/// Checks the inputs, starts a private Redis unless one is given, and creates the job with its spec.
pub fn open_session(options: &JobOptions) -> anyhow::Result<Session> {
    let started = Instant::now();
    let files = redcount_input::expand::inputs(&options.inputs)?;
    if files.is_empty() {
        bail!("the inputs name no files");
    }
    let mut spec = options.spec.clone();
    let mut dictionary = None;
    if let Some(d) = &spec.dictionary {
        let d = std::path::absolute(d).with_context(|| format!("dictionary {}", d.display()))?;
        dictionary = Some(
            std::fs::read(&d)
                .with_context(|| format!("cannot read the dictionary {}", d.display()))?,
        );
        spec.dictionary = Some(d);
    }
    let (server, url) = match &options.redis {
        Some(url) => {
            if options.chaos_every.is_some() || !options.chaos_at.is_empty() {
                bail!("--chaos-redis only crashes the private Redis: drop --redis to use it");
            }
            (None, url.clone())
        }
        None => {
            if let Some(every) = options.chaos_every.filter(|e| *e < MIN_CHAOS_EVERY) {
                bail!(
                    "--chaos-redis {every:?}: a killed redis-server needs longer than that to start \
                     again and load its files, so it would never be up (clients give up after 60 s); \
                     use {MIN_CHAOS_EVERY:?} or more"
                );
            }
            let server = EmbeddedRedis::start(options.durability, options.chaos_every)?;
            let url = server.url().to_string();
            (Some(server), url)
        }
    };
    let checkpoint_every = match (options.checkpoint, options.durability) {
        (Some(every), _) => Some(every),
        // RDB durability means checkpoints: once a second unless told otherwise.
        (None, Durability::Rdb) if server.is_some() => Some(Duration::from_secs(1)),
        _ => None,
    };
    let checkpointer = checkpoint_every
        .map(|every| Checkpointer::start(&url, every))
        .transpose()?;
    let name = options
        .job
        .clone()
        .unwrap_or_else(|| format!("wc-{}", redcount_server::random_hex(4)));
    let mut job = Job::new(Link::open(&url, LinkOptions::default())?, &name)?;
    if server.is_none() {
        if let Some(problem) = job.server_facts()?.eviction_problem(job.addr()) {
            bail!("{problem}");
        }
        report_external_durability(&mut job, options.durability != Durability::None);
        prune_expired(&url);
    }
    if options.job.is_none() {
        // The generated name is what `status`, `top`, `counts` and extra workers need.
        eprintln!("job {name} on redis {}", job.addr());
    } else {
        tracing::info!("job '{name}' on redis {}", job.addr());
    }
    if spec.sync_replicas > 0 {
        check_replicas(&mut job, spec.sync_replicas)?;
    }
    let run_id = redcount_server::random_hex(8);
    let (created, existing) =
        job.create_with_dictionary(Now::Coordinator, &run_id, &spec, dictionary.as_deref())?;
    if !created {
        bail!(
            "job '{name}' already exists at {} (run {existing}); pick another --job name, \
             or read its result with `redcount top --job {name}`",
            job.addr()
        );
    }
    let hook_guard = match &options.on_open {
        Some(hook) => Some((hook.0)(&url, &name)?),
        None => None,
    };
    Ok(Session {
        _hook_guard: hook_guard,
        files,
        url,
        job,
        name,
        started,
        server,
        run_id,
        commits: CommitLog::new(spec.history),
        spec,
        dictionary,
        tasks: Default::default(),
        sealed: false,
        recreated: 0,
        server_run: String::new(),
        spill: redcount_latency::Spill::new(None)?,
        _checkpointer: checkpointer,
    })
}

/// `--sync-replicas N` promises that a commit counts once N replicas have it: refuse a coordinator
/// that cannot keep that promise, rather than print a result nobody replicated.
fn check_replicas(job: &mut Job, wanted: u32) -> anyhow::Result<()> {
    if job.is_raft_group() {
        bail!(
            "--sync-replicas does not apply to a Raft group: every acknowledged commit is already on a \
             majority of its nodes; drop the flag"
        );
    }
    let info: String = job.query("INFO replication", redis::cmd("INFO").arg("replication"))?;
    let replicas: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    if replicas < wanted {
        bail!(
            "--sync-replicas {wanted}: redis at {} has {replicas} connected replica(s); start a \
             replicated one with `redcount cluster up --replicas {wanted}` and pass its URL, or drop the flag",
            job.addr()
        );
    }
    Ok(())
}

/// An external Redis keeps its own persistence settings: say what they are (loudly if the user asked
/// for a durability that only applies to the private Redis).
fn report_external_durability(job: &mut Job, asked: bool) {
    if job.is_raft_group() {
        tracing::info!(
            "raft group: every acknowledged commit is in the fsynced logs of a majority"
        );
        return;
    }
    let mut get = |key: &str| -> String {
        job.query::<Vec<String>>("CONFIG GET", redis::cmd("CONFIG").arg("GET").arg(key))
            .ok()
            .and_then(|v| v.get(1).cloned())
            .unwrap_or_else(|| "?".into())
    };
    let (save, aof, fsync) = (get("save"), get("appendonly"), get("appendfsync"));
    let settings = format!("save '{save}', appendonly {aof}, appendfsync {fsync}");
    if asked {
        tracing::warn!("--durability applies to the private Redis only; the external one keeps its own: {settings}");
    } else {
        tracing::info!("external redis persistence: {settings}");
    }
}

/// Removes the finished jobs of a shared Redis that are past their `--keep`: retention needs no
/// cron job, since every new job's driver does it. A failure here only warns.
fn prune_expired(url: &str) {
    match redcount_protocol::prune(url, None, false) {
        Ok(expired) => {
            for e in expired {
                tracing::info!(
                    "removed job '{}' ({} keys): finished {} s ago, past its --keep",
                    e.job,
                    e.keys,
                    e.finished_ago.as_secs()
                );
            }
        }
        Err(err) => tracing::warn!("could not remove expired jobs: {err}"),
    }
}
