//! The node's private redis-server as the replicated [`Machine`]: steps are applied a batch at a time
//! inside `MULTI ... SET raft:applied <position> EXEC`, so Redis holds exactly the steps up to the
//! position it records. An image is an RDB made by `BGSAVE`; restoring one restarts Redis on it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::Mutex;

use crate::frame::{Frame, Proto};
use crate::keeper::Keeper;
use crate::local::{args, LocalConn};
use crate::machine::{Machine, Recorded, Step};
use crate::snapshot_file::write_atomically;
use crate::types::Command;

/// Keys the node keeps in its own Redis, beside the jobs' `rc:{J}:*` keys.
pub const APPLIED_KEY: &str = "raft:applied";
pub const MEMBERSHIP_KEY: &str = "raft:membership";

/// The node's Redis.
pub struct RedisMachine {
    /// Redis's directory; `sm.rdb` in it is what Redis loads on start and what BGSAVE writes.
    dir: PathBuf,
    keeper: Keeper,
    /// The apply connection: steps, dumps and restores go through it one at a time.
    con: Mutex<Option<LocalConn>>,
    /// Held by dump and restore (both use `sm.rdb`).
    image_lock: Mutex<()>,
}

fn failed(message: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(message.to_string())
}

impl RedisMachine {
    /// Starts Redis in `dir` on `image` (an RDB from [`Machine::dump`]), or empty.
    pub async fn open(dir: &Path, image: Option<&[u8]>) -> anyhow::Result<RedisMachine> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let rdb = dir.join("sm.rdb");
        match image {
            Some(data) => write_atomically(&rdb, data)?,
            None => match std::fs::remove_file(&rdb) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    anyhow::bail!("cannot remove stale {}: {e}", rdb.display())
                }
                _ => {}
            },
        }
        let keeper = Keeper::start(dir.to_path_buf())?;
        let con = LocalConn::connect(keeper.port, &keeper.password, Proto::Resp2).await?;
        Ok(RedisMachine {
            dir: dir.to_path_buf(),
            keeper,
            con: Mutex::new(Some(con)),
            image_lock: Mutex::new(()),
        })
    }

    /// Port and password of the node's Redis (client sessions read from it directly).
    pub fn redis(&self) -> (u16, &str) {
        (self.keeper.port, &self.keeper.password)
    }

    async fn call(&self, commands: &[Vec<Vec<u8>>]) -> std::io::Result<Vec<Frame>> {
        let mut bytes = Vec::new();
        for args in commands {
            bytes.extend_from_slice(&Command::from_args(args).resp);
        }
        self.call_raw(&bytes, commands.len()).await
    }

    /// Sends encoded commands on the apply connection, reconnecting once if it broke.
    async fn call_raw(&self, bytes: &[u8], replies: usize) -> std::io::Result<Vec<Frame>> {
        let mut guard = self.con.lock().await;
        for attempt in 0..2 {
            if guard.is_none() {
                let (port, password) = self.redis();
                *guard = Some(
                    LocalConn::connect(port, password, Proto::Resp2)
                        .await
                        .map_err(|e| {
                            failed(format!("cannot reach the node's redis on port {port}: {e}"))
                        })?,
                );
            }
            let Some(con) = guard.as_mut() else { continue };
            match con.call_raw(bytes, replies).await {
                Ok(replies) => return Ok(replies),
                Err(e) if attempt == 0 => {
                    tracing::warn!("state machine connection lost ({e}); reconnecting");
                    *guard = None;
                }
                Err(e) => return Err(failed(format!("the node's redis failed: {e}"))),
            }
        }
        Err(failed("the node's redis is unreachable"))
    }

    /// Applies `steps` in one transaction (falling back to one per step if Redis refuses it).
    async fn apply_batch(&self, steps: &[Step<'_>]) -> std::io::Result<Vec<Vec<u8>>> {
        let Some(last) = steps.last() else {
            return Ok(Vec::new());
        };
        let mut bytes = Command::from_args(&args(&["MULTI"])).resp;
        let mut queued = 0usize;
        // Where each step's reply sits in EXEC's array (None: the step sends no command).
        let mut slots = Vec::with_capacity(steps.len());
        for step in steps {
            if let Some(membership) = step.membership {
                let set = vec![b"SET".to_vec(), MEMBERSHIP_KEY.into(), membership.to_vec()];
                bytes.extend_from_slice(&Command::from_args(&set).resp);
                queued += 1;
            }
            match step.command {
                Some(command) => {
                    bytes.extend_from_slice(command);
                    slots.push(Some(queued));
                    queued += 1;
                }
                None => slots.push(None),
            }
        }
        let set_applied = vec![b"SET".to_vec(), APPLIED_KEY.into(), last.position.to_vec()];
        bytes.extend_from_slice(&Command::from_args(&set_applied).resp);
        bytes.extend_from_slice(&Command::from_args(&args(&["EXEC"])).resp);
        let replies = self.call_raw(&bytes, queued + 3).await?;
        let exec = match replies.last() {
            Some(Frame::Array(items)) => items,
            // A command refused while queueing aborts the whole transaction (EXECABORT); apply the
            // steps one by one so only the bad one fails (deterministically, on every node).
            Some(Frame::Error(_)) if steps.len() > 1 => {
                let mut out = Vec::with_capacity(steps.len());
                for step in steps {
                    out.append(&mut Box::pin(self.apply_batch(std::slice::from_ref(step))).await?);
                }
                return Ok(out);
            }
            Some(Frame::Error(e)) => {
                // The step's own queue-time error says more than EXECABORT; its position still
                // moves (with its membership, if any), or the step would be applied again.
                let reply = replies[1..replies.len() - 1]
                    .iter()
                    .find(|r| r.is_error())
                    .cloned()
                    .unwrap_or_else(|| Frame::error(e.clone()));
                let only_position = Step {
                    command: None,
                    ..*last
                };
                Box::pin(self.apply_batch(&[only_position])).await?;
                return Ok(vec![reply.to_bytes()]);
            }
            other => return Err(failed(format!("unexpected EXEC reply {other:?}"))),
        };
        Ok(slots
            .into_iter()
            .map(|slot| match slot.and_then(|i| exec.get(i)) {
                Some(frame) => frame.to_bytes(),
                None => Frame::ok().to_bytes(),
            })
            .collect())
    }

    async fn persistence_info(&self) -> std::io::Result<String> {
        match self.call(&[args(&["INFO", "persistence"])]).await?.first() {
            Some(Frame::Bulk(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
            other => Err(failed(format!("INFO persistence answered {other:?}"))),
        }
    }

    /// Waits until a BGSAVE started after `saves_before` saves has finished.
    async fn wait_bgsave(&self, saves_before: u64) -> std::io::Result<()> {
        for _ in 0..6000 {
            let info = self.persistence_info().await?;
            let saves: u64 = info_field(&info, "rdb_saves").parse().unwrap_or(0);
            if info_field(&info, "rdb_bgsave_in_progress") == "0" && saves > saves_before {
                if info_field(&info, "rdb_last_bgsave_status") == "ok" {
                    return Ok(());
                }
                return Err(failed(
                    "BGSAVE of the node's redis failed: see its redis.log",
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(failed(
            "BGSAVE of the node's redis did not finish within 60 s",
        ))
    }
}

/// The value of `name:value` in an INFO reply ("" if absent).
fn info_field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// `GET raft:applied`, `GET raft:membership` replies -> what they record.
fn recorded_from(replies: &[Frame]) -> Recorded {
    let bulk = |f: Option<&Frame>| match f {
        Some(Frame::Bulk(b)) => Some(b.clone()),
        _ => None,
    };
    Recorded {
        position: bulk(replies.first()),
        membership: bulk(replies.get(1)),
    }
}

impl Machine for RedisMachine {
    async fn recorded(&self) -> std::io::Result<Recorded> {
        let replies = self
            .call(&[args(&["GET", APPLIED_KEY]), args(&["GET", MEMBERSHIP_KEY])])
            .await?;
        Ok(recorded_from(&replies))
    }

    async fn apply(&self, steps: &[Step<'_>]) -> std::io::Result<Vec<Vec<u8>>> {
        self.apply_batch(steps).await
    }

    async fn dump(&self) -> std::io::Result<(Recorded, Vec<u8>)> {
        let _image = self.image_lock.lock().await;
        let saves: u64 = info_field(&self.persistence_info().await?, "rdb_saves")
            .parse()
            .unwrap_or(0);
        // What is recorded and the fork, in one pipeline on the apply connection: no step can be
        // applied in between, so the RDB holds exactly the recorded state.
        let replies = self
            .call(&[
                args(&["GET", APPLIED_KEY]),
                args(&["GET", MEMBERSHIP_KEY]),
                args(&["BGSAVE"]),
            ])
            .await?;
        if let Some(Frame::Error(e)) = replies.get(2) {
            return Err(failed(format!("BGSAVE refused: {e}")));
        }
        self.wait_bgsave(saves).await?;
        let rdb = tokio::fs::read(self.dir.join("sm.rdb")).await?;
        Ok((recorded_from(&replies), rdb))
    }

    async fn restore(&self, image: &[u8]) -> std::io::Result<Recorded> {
        let _image = self.image_lock.lock().await;
        let rdb = self.dir.join("sm.rdb");
        tokio::task::block_in_place(|| write_atomically(&rdb, image))?;
        // Restart Redis on the image; the apply connection is re-made on next use.
        let mut con = self.con.lock().await;
        *con = None;
        self.keeper.restart().await.map_err(failed)?;
        drop(con);
        self.recorded().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(parts: &[&str]) -> Vec<u8> {
        Command::from_args(&args(parts)).resp
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_command_refused_while_queueing_fails_alone_and_the_position_still_moves() {
        let dir = tempfile::tempdir().expect("temp dir");
        let m = RedisMachine::open(dir.path(), None).await.expect("redis");
        assert_eq!(m.recorded().await.expect("recorded"), Recorded::default());
        let (a, bad, b) = (
            resp(&["SET", "a", "1"]),
            resp(&["GET"]), // wrong arity: refused at queue time, which aborts a whole EXEC
            resp(&["SET", "b", "2"]),
        );
        let steps = [
            Step {
                command: Some(&a),
                membership: None,
                position: b"1",
            },
            Step {
                command: None,
                membership: Some(b"m2"),
                position: b"2",
            },
            Step {
                command: Some(&bad),
                membership: None,
                position: b"3",
            },
            Step {
                command: Some(&b),
                membership: None,
                position: b"4",
            },
        ];
        let replies = m.apply(&steps).await.expect("apply");
        assert_eq!(replies[0], b"+OK\r\n");
        assert_eq!(replies[1], b"+OK\r\n");
        assert!(
            replies[2].starts_with(b"-ERR wrong number of arguments"),
            "{:?}",
            String::from_utf8_lossy(&replies[2])
        );
        assert_eq!(replies[3], b"+OK\r\n");
        let recorded = m.recorded().await.expect("recorded");
        assert_eq!(recorded.position.as_deref(), Some(&b"4"[..]));
        assert_eq!(recorded.membership.as_deref(), Some(&b"m2"[..]));
        // A dump restores to exactly this state.
        let (at_dump, image) = m.dump().await.expect("dump");
        assert_eq!(at_dump, recorded);
        let later = resp(&["SET", "c", "3"]);
        m.apply(&[Step {
            command: Some(&later),
            membership: None,
            position: b"5",
        }])
        .await
        .expect("apply");
        assert_eq!(m.restore(&image).await.expect("restore"), recorded);
        let got = m
            .call(&[args(&["MGET", "a", "b", "c"])])
            .await
            .expect("mget");
        assert_eq!(
            got[0],
            Frame::Array(vec![Frame::bulk("1"), Frame::bulk("2"), Frame::Null])
        );
    }
}
