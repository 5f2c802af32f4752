//! Opening a job: the inputs are checked (a path that names nothing is an error before anything
//! starts), a private Redis is started unless one is given, and the job is created with its spec.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redcount_protocol::{Job, Link, LinkOptions, Now, PlanFacts};

use super::enqueued::{EnqueuedTasks, TaskSpill};
use super::repair::CommitLog;
use super::Session;
use crate::checkpoint::Checkpointer;
use crate::embedded::{Durability, EmbeddedRedis};
use crate::JobOptions;

/// The shortest `--chaos-redis` interval: below it the private Redis spends its whole life starting.
const MIN_CHAOS_EVERY: Duration = Duration::from_millis(300);

/// What kind of job a session opens: a batch job, planned from its inputs (and resumed when a
/// job of its name was interrupted), or a stream, whose tasks come from a schedule.
#[derive(Debug, Clone, Copy)]
pub enum JobKind {
    /// `run`: inputs cut into tasks of `split_bytes` (chosen from the input size when None),
    /// small ones packed together unless `no_pack`.
    Batch {
        /// `--split-bytes`.
        split_bytes: Option<u64>,
        /// `--no-pack`.
        no_pack: bool,
    },
    /// `stream`: never resumed (its schedule is on the clock of the run that made it).
    Stream,
}

/// How a batch job's inputs are to be planned: the split size (None: from the first inputs
/// listed, [`crate::plan::split_for`]) and whether small ones are packed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Planning {
    /// Split (and packing) size; None: chosen from the first inputs listed.
    pub split_bytes: Option<u64>,
    /// Small inputs packed together.
    pub pack: bool,
}

/// Checks the inputs, starts a private Redis unless one is given, and creates the job with its
/// spec; or, for a batch job of that name left unfinished by an interrupted run, checks it was
/// started with the same settings and resumes it (its inputs are checked against its plan's
/// digest once they are planned again: [`Session::finish_plan`]). A batch job's inputs are only
/// checked here (each argument names something); they are listed, planned and enqueued as the
/// job runs, a stream's are listed now.
pub fn open_session(options: &JobOptions, kind: JobKind) -> anyhow::Result<Session> {
    let started = Instant::now();
    let files = match kind {
        JobKind::Batch { .. } => {
            redcount_input::expand::check_arguments(&options.inputs)?;
            Vec::new()
        }
        JobKind::Stream => {
            let files = redcount_input::expand::inputs(&options.inputs)?;
            if files.is_empty() {
                bail!("the inputs name no files");
            }
            files
        }
    };
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
        let facts = job.server_facts()?;
        if let Some(problem) = facts.eviction_problem(job.addr()) {
            bail!("{problem}");
        }
        tracing::info!("redis at {} is {}", job.addr(), facts.server);
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
    // A job of this name that is there already: replaced, resumed, or refused with the reason.
    let mut resume = None;
    if options.job.is_some() && job.exists()? {
        if options.replace {
            let keys = job.drop_job(Now::Coordinator, true)?;
            eprintln!(
                "job '{name}': replaced (its {keys} keys at {} removed)",
                job.addr()
            );
        } else {
            resume = Some(resumable(&mut job, kind, &spec, dictionary.as_deref())?);
        }
    }
    let planning = match kind {
        JobKind::Batch {
            split_bytes,
            no_pack,
        } => Planning {
            split_bytes: split_bytes.or(resume.as_ref().map(|r| r.plan.split_bytes)),
            pack: !no_pack,
        },
        JobKind::Stream => Planning::default(),
    };
    let run_id = match &resume {
        Some(r) => {
            eprintln!(
                "job '{name}' at {}: resuming it ({} of {} tasks done)",
                job.addr(),
                r.status.done + r.status.dead,
                r.status.tasks.max(r.plan.tasks)
            );
            r.status.run_id.clone()
        }
        None => {
            let run_id = redcount_server::random_hex(8);
            let (created, existing) = job.create_with_dictionary(
                Now::Coordinator,
                &run_id,
                &spec,
                dictionary.as_deref(),
                None,
            )?;
            if !created {
                // Made by another run between our look and our create.
                bail!(
                    "job '{name}' was just made at {} by another run ({existing}); pick another \
                     --job name",
                    job.addr()
                );
            }
            run_id
        }
    };
    let hook_guard = match &options.on_open {
        Some(hook) => Some((hook.0)(&url, &name)?),
        None => None,
    };
    let file_count = files.len() as u64;
    Ok(Session {
        _hook_guard: hook_guard,
        files,
        file_count,
        url,
        job,
        name,
        started,
        server,
        run_id,
        commits: CommitLog::new(spec.history),
        spec,
        dictionary,
        plan: None,
        resumed: resume.is_some(),
        resume_plan: resume.map(|r| r.plan),
        planning,
        tasks: EnqueuedTasks::Spilled(TaskSpill::new()?),
        sealed: false,
        recreated: 0,
        server_run: String::new(),
        spill: redcount_latency::Spill::new(None)?,
        _checkpointer: checkpointer,
    })
}

/// A job of the run's name that an earlier run left unfinished.
struct Resume {
    status: redcount_protocol::Status,
    plan: PlanFacts,
}

/// The job of this name, if this run may resume it: a batch job still running, started with the
/// same settings. Anything else is refused with what to do instead.
fn resumable(
    job: &mut Job,
    kind: JobKind,
    spec: &redcount_protocol::JobSpec,
    dictionary: Option<&[u8]>,
) -> anyhow::Result<Resume> {
    let (name, addr) = (job.name().to_string(), job.addr().to_string());
    let status = job.status(
        Now::Coordinator,
        redcount_protocol::live_window(spec.lease.get()),
    )?;
    if let Some(state) = status.stopped() {
        bail!(
            "job '{name}' at {addr} was {state} ({}): run with --replace to start it over, or \
             pick another --job name",
            status.stop_reason
        );
    }
    if status.finished {
        bail!(
            "job '{name}' at {addr} is already finished ({} tasks, {} words): read its result with \
             `redcount counts --job {name}` (or `top`), run with --replace to count it again, or \
             pick another --job name",
            status.tasks,
            status.words
        );
    }
    let plan = match (kind, job.plan_facts()?) {
        (JobKind::Stream, _) => bail!(
            "job '{name}' at {addr} already exists and a stream is not resumed: run with \
             --replace to start it over, or pick another --job name"
        ),
        (_, None) if status.state == "open" => bail!(
            "job '{name}' at {addr} is unfinished, and was stopped while its inputs were still \
             being listed ({} tasks enqueued), before its plan was complete: run with --replace \
             to start it over",
            status.tasks
        ),
        (_, None) => bail!(
            "job '{name}' at {addr} is unfinished, but was made by another version of redcount \
             that kept no plan to resume it from: finish it with `redcount worker --job {name}`, \
             or run with --replace to start it over"
        ),
        (_, Some(plan)) => plan,
    };
    let mut differences = job.spec()?.differences(spec);
    if dictionary.is_some() && job.dictionary_text()?.as_deref() != dictionary {
        differences.push("--dictionary (the file's words changed since the job started)".into());
    }
    if let JobKind::Batch {
        split_bytes,
        no_pack,
    } = kind
    {
        if let Some(split) = split_bytes.filter(|s| *s != plan.split_bytes) {
            differences.push(format!(
                "--split-bytes {} (this run: {split})",
                plan.split_bytes
            ));
        }
        if no_pack == plan.packed {
            let flag = |packed: bool| if packed { "packed" } else { "--no-pack" };
            differences.push(format!(
                "{} (this run: {})",
                flag(plan.packed),
                flag(!no_pack)
            ));
        }
    }
    if !differences.is_empty() {
        bail!(
            "job '{name}' at {addr} is unfinished, and was started with other settings: {}; run \
             it again with the job's settings to resume it, or with --replace to start it over",
            differences.join(", ")
        );
    }
    Ok(Resume { status, plan })
}

/// Refuses to resume a job whose inputs are not those it was planned from.
pub(super) fn same_plan(
    name: &str,
    addr: &str,
    job: &PlanFacts,
    now: &PlanFacts,
) -> anyhow::Result<()> {
    if job.digest == now.digest {
        return Ok(());
    }
    bail!(
        "job '{name}' at {addr} is unfinished, but its inputs changed since it started: it \
         planned {} files ({} bytes) into {} tasks, this run {} files ({} bytes) into {} tasks (a \
         file added, removed or rewritten); run with --replace to count them from the start, or \
         pick another --job name",
        job.files,
        job.bytes,
        job.tasks,
        now.files,
        now.bytes,
        now.tasks
    )
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
