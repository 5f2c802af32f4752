//! `redcount experiment partitions`: minutes of random network faults on a Raft group, the way Jepsen
//! tests a database. Three nodes reach each other only through fault proxies (one per direction of
//! every pair); batch jobs run back to back while a seeded schedule cuts the leader off, drops one
//! direction of its links, leaves no majority anywhere, pauses nodes and kills them. Every job's
//! counts are compared with the independent oracle, and at the end every replica's state digest.
//! Writes `partitions.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use redcount_protocol::{Job, Link, LinkOptions, Now};
use redcount_testkit::corpus::{write_text_corpus, Rng};
use redcount_testkit::raft_group::ProxiedGroup;
use redcount_testkit::{oracle_count, read_out_file, Fault};

/// What to run.
#[derive(Debug, Clone)]
pub struct PartitionOptions {
    /// Where `partitions.md` goes.
    pub out_dir: PathBuf,
    /// How long to keep injecting faults (jobs run back to back meanwhile).
    pub duration: Duration,
    /// Seed of the corpus and of the fault schedule.
    pub seed: u64,
    /// Files per job (one task each).
    pub files: usize,
    /// The redcount executable (raft nodes, drivers and their workers).
    pub exe: PathBuf,
}

/// The faults of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The leader cut off from both followers.
    IsolateLeader,
    /// The leader's messages to the followers lost; theirs still reach it.
    LeaderMuted,
    /// The leader cut off and a follower killed: no majority anywhere.
    NoMajority,
    /// The leader SIGSTOPped while a follower is cut off.
    PausedLeader,
    /// The leader SIGKILLed (restarted at the end of the hold).
    KillLeader,
    /// Every link slowed by 50 ms each way.
    SlowLinks,
    /// One follower's links black-holed (open, silent).
    SilentFollower,
}

const KINDS: [Kind; 7] = [
    Kind::IsolateLeader,
    Kind::LeaderMuted,
    Kind::NoMajority,
    Kind::PausedLeader,
    Kind::KillLeader,
    Kind::SlowLinks,
    Kind::SilentFollower,
];

struct FaultRecord {
    kind: Kind,
    at: Duration,
    hold: Duration,
    /// From the heal to the next commit of the running job (None: none came within 30 s or the job
    /// had ended).
    recovery: Option<Duration>,
}

struct JobRecord {
    name: String,
    exact: bool,
    wall: f64,
    summary: serde_json::Value,
}

/// Runs the experiment and writes the report; returns its path. Fails if any job's counts differ
/// from the oracle or the replicas end up different.
pub fn partition_experiment(options: &PartitionOptions) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&options.out_dir)
        .with_context(|| format!("creating {}", options.out_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("redcount-partitions-")
        .tempdir()?;
    let corpus = work.path().join("corpus");
    let files = write_text_corpus(&corpus, options.files, 1_000, 8_000, options.seed);
    let expected = oracle_count(&files);
    let mut g = ProxiedGroup::start(
        &work.path().join("group"),
        3,
        &options.exe,
        &["--snapshot-every", "500"],
    )?;
    let url = g.nodes.group.url();
    let mut rng = Rng::new(options.seed);
    let started = Instant::now();
    let (mut faults, mut jobs) = (Vec::new(), Vec::new());
    let mut running: Option<RunningJob> = None;
    let mut n = 0;
    while started.elapsed() < options.duration {
        // Keep one job running.
        if let Some(done) = running.take_if(|r| matches!(r.child.try_wait(), Ok(Some(_)))) {
            jobs.push(done.finish(&expected)?);
        }
        if running.is_none() {
            n += 1;
            let name = format!("p{n}");
            let out = work.path().join(format!("{name}.tsv"));
            let child = start_job(&options.exe, &url, &name, &corpus, &out)?;
            eprintln!("partitions: job {name} started");
            running = Some(RunningJob {
                name,
                child,
                out,
                since: Instant::now(),
            });
            std::thread::sleep(Duration::from_millis(800));
        }
        let Some(leader) = g.nodes.group.leader() else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
        let kind = KINDS[rng.range(0, KINDS.len() as u64) as usize];
        let hold = Duration::from_millis(rng.range(800, 3_000));
        let at = started.elapsed();
        eprintln!("partitions: {at:.1?} {kind:?} for {hold:.1?} (leader {leader})");
        apply(&mut g, kind, leader, &followers, hold)?;
        let recovery = running
            .as_ref()
            .map(|r| time_to_next_commit(&url, &r.name))
            .transpose()?
            .flatten();
        faults.push(FaultRecord {
            kind,
            at,
            hold,
            recovery,
        });
        std::thread::sleep(Duration::from_millis(rng.range(500, 2_000)));
    }
    if let Some(last) = running.take() {
        jobs.push(last.finish(&expected)?);
    }
    let digests = g.converged_digests(Duration::from_secs(60))?;
    let identical = digests.iter().all(|d| *d == digests[0]);
    let report = options.out_dir.join("partitions.md");
    std::fs::write(
        &report,
        render(options, &faults, &jobs, &digests, identical),
    )
    .with_context(|| format!("writing {}", report.display()))?;
    if !identical || jobs.iter().any(|j| !j.exact) {
        bail!(
            "a job's counts differ from the oracle or the replicas differ; see {}",
            report.display()
        );
    }
    Ok(report)
}

fn apply(
    g: &mut ProxiedGroup,
    kind: Kind,
    leader: u64,
    followers: &[u64],
    hold: Duration,
) -> anyhow::Result<()> {
    let pid = |g: &ProxiedGroup, id: u64| g.nodes.pid(id).map(|p| Pid::from_raw(p as i32));
    match kind {
        Kind::IsolateLeader => g.links.isolate(leader),
        Kind::LeaderMuted => followers
            .iter()
            .for_each(|&f| g.links.link(leader, f, Fault::DropRequests)),
        Kind::NoMajority => {
            g.links.isolate(leader);
            g.nodes.kill(followers[0]);
        }
        Kind::PausedLeader => {
            if let Some(p) = pid(g, leader) {
                kill(p, Signal::SIGSTOP)?;
            }
            g.links.isolate(followers[0]);
        }
        Kind::KillLeader => g.nodes.kill(leader),
        Kind::SlowLinks => g.links.all(Fault::Delay(Duration::from_millis(50))),
        Kind::SilentFollower => g.links.around(followers[0], Fault::Blackhole),
    }
    std::thread::sleep(hold);
    match kind {
        Kind::NoMajority => g.nodes.spawn(followers[0], false)?,
        Kind::PausedLeader => {
            if let Some(p) = pid(g, leader) {
                kill(p, Signal::SIGCONT)?;
            }
        }
        Kind::KillLeader => g.nodes.spawn(leader, false)?,
        _ => {}
    }
    g.links.heal();
    Ok(())
}

fn start_job(
    exe: &Path,
    url: &str,
    name: &str,
    corpus: &Path,
    out: &Path,
) -> anyhow::Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.args([
        "run",
        "-w",
        "2",
        "--json",
        "-k",
        "0",
        "--no-pack",
        "--lease",
        "2s",
    ])
    .args([
        "--speculate-factor",
        "0",
        "--worker-slow",
        "20ms",
        "--job",
        name,
    ])
    .arg("--out")
    .arg(out)
    .arg(corpus)
    // The URL holds the group's password: through the environment, never the command line.
    .env("REDIS_URL", url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    cmd.spawn()
        .with_context(|| format!("starting {}", exe.display()))
}

/// A job of the experiment while it runs.
struct RunningJob {
    name: String,
    child: Child,
    out: PathBuf,
    since: Instant,
}

impl RunningJob {
    /// Waits for the driver and compares its counts with `expected`.
    fn finish(self, expected: &redcount_testkit::Counts) -> anyhow::Result<JobRecord> {
        let output = self.child.wait_with_output()?;
        let wall = self.since.elapsed().as_secs_f64();
        let summary: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        let exact = output.status.success() && read_out_file(&self.out) == *expected;
        eprintln!(
            "partitions: job {} ended in {wall:.1} s, exact: {exact}",
            self.name
        );
        Ok(JobRecord {
            name: self.name,
            exact,
            wall,
            summary,
        })
    }
}

/// Time from now until job `name` commits again (None when nothing came within 30 s).
fn time_to_next_commit(url: &str, name: &str) -> anyhow::Result<Option<Duration>> {
    let healed = Instant::now();
    let mut job = Job::new(Link::open(url, LinkOptions::default())?, name)?;
    let live = Duration::from_secs(10);
    let before = job
        .status(Now::Coordinator, live)
        .map(|s| s.done)
        .unwrap_or(0);
    while healed.elapsed() < Duration::from_secs(30) {
        let status = job.status(Now::Coordinator, live)?;
        if status.done > before {
            return Ok(Some(healed.elapsed()));
        }
        if status.finished {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(None)
}

fn render(
    options: &PartitionOptions,
    faults: &[FaultRecord],
    jobs: &[JobRecord],
    digests: &[String],
    identical: bool,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Network faults on a Raft group\n");
    let _ = writeln!(
        md,
        "`redcount experiment partitions --duration {}s --seed {}`: 3 nodes behind 6 fault proxies, \
         {} faults over {} jobs of {} one-file tasks (2 workers, 2 s leases, 20 ms of extra CPU per \
         file). Every job's counts compared with the oracle; replicas {}.\n",
        options.duration.as_secs(),
        options.seed,
        faults.len(),
        jobs.len(),
        options.files,
        if identical {
            "identical at the end (`DEBUG DIGEST`)"
        } else {
            "**differ** at the end"
        }
    );
    let _ = writeln!(md, "## Jobs\n");
    let _ = writeln!(
        md,
        "| job | exact | wall s | recomputed | re-delivered | duplicate commits | lost acknowledged commits |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|");
    for j in jobs {
        let field = |k: &str| j.summary[k].as_u64().map_or("?".into(), |v| v.to_string());
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {} | {} | {} | {} |",
            j.name,
            if j.exact { "yes" } else { "**no**" },
            j.wall,
            field("recomputed"),
            field("redelivered"),
            field("duplicates"),
            field("recomputed_after_rollback"),
        );
    }
    let _ = writeln!(md, "\n## Faults\n");
    let _ = writeln!(
        md,
        "| at s | fault | held s | next commit after heal (ms) |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|");
    for f in faults {
        let _ = writeln!(
            md,
            "| {:.1} | {:?} | {:.1} | {} |",
            f.at.as_secs_f64(),
            f.kind,
            f.hold.as_secs_f64(),
            f.recovery.map_or("-".into(), |r| r.as_millis().to_string())
        );
    }
    let _ = writeln!(md, "\n## Recovery by fault\n");
    let _ = writeln!(md, "| fault | times | median ms | max ms |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    for kind in KINDS {
        let mut times: Vec<u128> = faults
            .iter()
            .filter(|f| f.kind == kind)
            .filter_map(|f| f.recovery.map(|r| r.as_millis()))
            .collect();
        if times.is_empty() {
            continue;
        }
        times.sort_unstable();
        let _ = writeln!(
            md,
            "| {kind:?} | {} | {} | {} |",
            times.len(),
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    let _ = writeln!(md, "\nDigests: {}", digests.join(", "));
    md
}
