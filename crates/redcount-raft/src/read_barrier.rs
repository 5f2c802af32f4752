//! The read barrier, shared by every read of a node: before a read, the leader confirms with a
//! quorum that it still leads and waits until it applied what it had committed, so the read sees
//! every acknowledged write. One such round serves every read that arrived before it started:
//! reads arriving while a round is in flight wait for the next one, which starts when the
//! current one ends. That is still linearizable (each read is served by a round that began after
//! the read arrived), and at N concurrent readers it costs one quorum round per round trip, not N.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::watch;

use crate::frame::Frame;
use crate::replica::redirect;
use crate::types::Raft;

/// Confirming leadership that takes longer than this is answered with TRYAGAIN.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// A round's outcome: Ok, or the error frame every read it served gets (a redirect, TRYAGAIN).
type Outcome = Result<(), Frame>;

/// Rounds of `ensure_linearizable`, shared by the reads of one node.
pub struct ReadBarrier {
    raft: Raft,
    /// Each read confirms with its own round instead (`raft-node --unbatched-reads`: to measure
    /// what sharing saves).
    unbatched: bool,
    rounds: Mutex<Rounds>,
    /// (the last finished round, its outcome).
    finished: watch::Sender<(u64, Outcome)>,
}

struct Rounds {
    /// The number the next round to start will get (rounds are 1, 2, ...).
    next: u64,
    /// A read is waiting for round `next`.
    wanted: bool,
    /// Rounds started and not yet finished.
    in_flight: usize,
}

/// Rounds that may be in flight at once. With two, a read arriving just after a round started
/// would get a round at once instead of waiting for the current one to end; measured on a 2-core
/// machine (`bench --raft-reads`) that was slower (GET at 10 clients 1.63x the unbatched rate
/// against 1.8-2.05x with one): the second round's CPU costs more than the wait it saves.
const MAX_IN_FLIGHT: usize = 1;

impl ReadBarrier {
    pub fn new(raft: Raft, unbatched: bool) -> Arc<ReadBarrier> {
        Arc::new(ReadBarrier {
            raft,
            unbatched,
            rounds: Mutex::new(Rounds {
                next: 1,
                wanted: false,
                in_flight: 0,
            }),
            finished: watch::channel((0, Ok(()))).0,
        })
    }

    /// Returns once a round that started after this call confirmed the leadership.
    pub async fn confirm(self: &Arc<Self>) -> Outcome {
        if self.unbatched {
            return confirm_once(&self.raft).await;
        }
        let mut finished = self.finished.subscribe();
        let mine = {
            let mut rounds = self.lock();
            let mine = rounds.next;
            rounds.wanted = true;
            self.start_wanted(&mut rounds);
            mine
        };
        loop {
            {
                let (round, outcome) = &*finished.borrow_and_update();
                // A later round than ours also started after this read arrived.
                if *round >= mine {
                    return outcome.clone();
                }
            }
            if finished.changed().await.is_err() {
                return Err(Frame::error("TRYAGAIN raft: node shutting down"));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts round `next` if a read wants it and fewer than [`MAX_IN_FLIGHT`] run.
    fn start_wanted(self: &Arc<Self>, rounds: &mut Rounds) {
        if !rounds.wanted || rounds.in_flight >= MAX_IN_FLIGHT {
            return;
        }
        rounds.wanted = false;
        rounds.in_flight += 1;
        let round = rounds.next;
        rounds.next += 1;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = confirm_once(&me.raft).await;
            // Rounds may finish out of order: only a later round than the last one counts.
            me.finished.send_if_modified(|last| {
                if round > last.0 {
                    *last = (round, outcome);
                    true
                } else {
                    false
                }
            });
            let mut rounds = me.lock();
            rounds.in_flight -= 1;
            me.start_wanted(&mut rounds);
        });
    }
}

/// One quorum round: this node still leads, and it applied what it had committed.
async fn confirm_once(raft: &Raft) -> Outcome {
    match tokio::time::timeout(READ_TIMEOUT, raft.ensure_linearizable()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
            Err(redirect(f.leader_id, f.leader_node.as_ref()))
        }
        Ok(Err(e)) => Err(Frame::error(format!(
            "TRYAGAIN raft: cannot confirm leadership: {e}"
        ))),
        Err(_) => Err(Frame::error(format!(
            "TRYAGAIN raft: leadership not confirmed within {READ_TIMEOUT:?}: a majority of the \
             group is unreachable; retry"
        ))),
    }
}
