//! The fault schedule of a stream job, run by a thread of its own next to the injector: kill a worker
//! at given times (and replace it after a delay), slow a worker down by SIGSTOP/SIGCONT duty-cycling
//! (like cpulimit), kill the leader of a Raft group (and start it again 3 s later). Every action
//! is noted in the job's `events` stream, so plots can mark it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use redcount_protocol::{Job, Now};

use crate::pool::WorkerPool;

/// What to do, at times relative to the start of injection.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// SIGKILL one worker at each of these times.
    pub kills: Vec<Duration>,
    /// From each time, slow one worker down by the factor.
    pub stragglers: Vec<(Duration, f64)>,
    /// Replace a killed worker after this delay.
    pub restart_after: Option<Duration>,
    /// SIGKILL the leader of the Raft group at each of these times ...
    pub leader_kills: Vec<Duration>,
    /// ... the group started by `cluster up --raft` in this directory, with this redcount binary
    /// (which starts the killed node again after [`NODE_RESTART_DELAY`]).
    pub raft_group: Option<(PathBuf, PathBuf)>,
}

/// A killed Raft node comes back after this long (the group carries on without it meanwhile). Not
/// sooner: a leader back within about a second resumes its leadership from its vote and serves only
/// once it re-applied its log, which makes the outage longer than the failover it demonstrates.
pub const NODE_RESTART_DELAY: Duration = Duration::from_secs(3);

impl FaultPlan {
    /// True when the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.kills.is_empty() && self.stragglers.is_empty() && self.leader_kills.is_empty()
    }
}

/// The running schedule; stopping it resumes every stopped worker.
pub struct FaultRunner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Length of one SIGSTOP/SIGCONT cycle: short enough that a slowed worker still looks alive.
const DUTY_PERIOD: Duration = Duration::from_millis(100);

enum Action {
    Kill,
    Restart(usize),
    Slow(f64),
    KillLeader,
    RestartNodes,
}

impl FaultRunner {
    /// Starts executing `plan` against `pool`, with `start` as time zero; events go to `job`.
    pub fn start(
        plan: FaultPlan,
        pool: Arc<WorkerPool>,
        mut job: Job,
        start: Instant,
    ) -> FaultRunner {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut agenda: Vec<(Duration, Action)> =
                plan.kills.iter().map(|&at| (at, Action::Kill)).collect();
            agenda.extend(plan.stragglers.iter().map(|&(at, f)| (at, Action::Slow(f))));
            agenda.extend(plan.leader_kills.iter().map(|&at| (at, Action::KillLeader)));
            agenda.sort_by_key(|(at, _)| *at);
            let mut agenda = std::collections::VecDeque::from(agenda);
            // Victims are taken in turn, so two faults do not hit the same worker while others exist.
            let mut next_victim = 0usize;
            // (slot, factor, currently stopped)
            let mut slowed: Vec<(usize, f64, bool)> = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let elapsed = start.elapsed();
                while agenda.front().is_some_and(|(at, _)| *at <= elapsed) {
                    let Some((_, action)) = agenda.pop_front() else {
                        break;
                    };
                    let n = pool.len().max(1);
                    match action {
                        Action::Kill => {
                            let slot = next_victim % n;
                            next_victim += 1;
                            if let Some(pid) = pool.signal(slot, Signal::SIGKILL) {
                                note(&mut job, "kill-worker", &format!("worker pid {pid} killed"));
                                slowed.retain(|(s, _, _)| *s != slot);
                                if let Some(delay) = plan.restart_after {
                                    let at = elapsed + delay;
                                    let i = agenda.partition_point(|(t, _)| *t <= at);
                                    agenda.insert(i, (at, Action::Restart(slot)));
                                }
                            }
                        }
                        Action::Restart(slot) => match pool.replace(slot) {
                            Ok(pid) => note(
                                &mut job,
                                "restart-worker",
                                &format!("worker pid {pid} started"),
                            ),
                            Err(err) => tracing::warn!("could not restart a worker: {err:#}"),
                        },
                        Action::KillLeader => {
                            if let Some((dir, _)) = &plan.raft_group {
                                match kill_leader(dir, &mut job) {
                                    Ok(()) => {
                                        let at = elapsed + NODE_RESTART_DELAY;
                                        let i = agenda.partition_point(|(t, _)| *t <= at);
                                        agenda.insert(i, (at, Action::RestartNodes));
                                    }
                                    Err(err) => {
                                        tracing::warn!("could not kill the Raft leader: {err:#}")
                                    }
                                }
                            }
                        }
                        Action::RestartNodes => {
                            if let Some((dir, exe)) = &plan.raft_group {
                                match restart_nodes(dir, exe) {
                                    Ok(detail) => note(&mut job, "restart-raft-node", &detail),
                                    Err(err) => {
                                        tracing::warn!("could not restart Raft nodes: {err:#}")
                                    }
                                }
                            }
                        }
                        Action::Slow(factor) => {
                            let slot = next_victim % n;
                            next_victim += 1;
                            let pid = pool.pid(slot).unwrap_or(0);
                            note(
                                &mut job,
                                "straggler",
                                &format!("worker pid {pid} slowed down {factor}x"),
                            );
                            slowed.push((slot, factor, false));
                        }
                    }
                }
                // Duty cycle: a worker slowed down F times runs for 1/F of every period.
                let phase = start.elapsed().as_secs_f64() % DUTY_PERIOD.as_secs_f64()
                    / DUTY_PERIOD.as_secs_f64();
                for (slot, factor, stopped) in slowed.iter_mut() {
                    let run = phase < 1.0 / *factor;
                    if run == *stopped {
                        pool.signal(
                            *slot,
                            if run {
                                Signal::SIGCONT
                            } else {
                                Signal::SIGSTOP
                            },
                        );
                        *stopped = !run;
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            for (slot, _, _) in slowed {
                pool.signal(slot, Signal::SIGCONT);
            }
        });
        FaultRunner {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the schedule and resumes every stopped worker.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FaultRunner {
    fn drop(&mut self) {
        self.halt();
    }
}

/// SIGKILLs the node that leads the group in `dir`. The event is noted first: the group stamps
/// events with its leader's clock, and after the kill only a new leader could take the note, a
/// failover later than the kill.
fn kill_leader(dir: &std::path::Path, job: &mut Job) -> anyhow::Result<()> {
    let group = redcount_server::raft_group::Group::load(dir)?;
    let id = group
        .leader()
        .ok_or_else(|| anyhow::anyhow!("no node of the group in {} leads", dir.display()))?;
    let pid = group
        .pid(group.node(id)?)
        .ok_or_else(|| anyhow::anyhow!("node {id} leads but its pid file names no running node"))?;
    note(
        job,
        "kill-raft-leader",
        &format!("raft leader node {id} (pid {pid}) killed"),
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)?;
    Ok(())
}

/// Starts the group's nodes that do not run; says how many.
fn restart_nodes(dir: &std::path::Path, exe: &std::path::Path) -> anyhow::Result<String> {
    let size = redcount_server::raft_group::Group::load(dir)?.nodes.len();
    let (_, started) = redcount_server::raft_group::group_up(dir, size, exe)?;
    Ok(format!("{started} raft node(s) started again"))
}

/// Records an event in the job (the markers of latency plots and the dashboard), and logs it.
pub(crate) fn note(job: &mut Job, kind: &str, detail: &str) {
    tracing::info!("{kind}: {detail}");
    if let Err(err) = job.event(Now::Coordinator, kind, detail) {
        tracing::warn!("could not note the {kind} event: {err}");
    }
}
