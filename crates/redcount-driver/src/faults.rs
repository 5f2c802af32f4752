//! The fault schedule of a stream job, run by a thread of its own next to the injector: kill a worker
//! at given times (and replace it after a delay), slow a worker down by SIGSTOP/SIGCONT duty-cycling
//! (like cpulimit). Every action is noted in the job's `events` stream, so plots can mark it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use redcount_protocol::{now_ms, Job};

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
}

impl FaultPlan {
    pub fn is_empty(&self) -> bool {
        self.kills.is_empty() && self.stragglers.is_empty()
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

fn note(job: &mut Job, kind: &str, detail: &str) {
    tracing::info!("{kind}: {detail}");
    if let Err(err) = job.event(now_ms(), kind, detail) {
        tracing::warn!("could not note the {kind} event: {err}");
    }
}
