//! The replicated state machine: the node's private redis-server. Committed entries are applied in log
//! order, a batch at a time, inside `MULTI ... SET raft:applied ... EXEC`, so Redis holds exactly the
//! entries up to the applied log id it records. A snapshot is an RDB of that Redis (made by `BGSAVE`)
//! plus its meta, kept in `DIR/snapshot.bin`; on start the node loads it and openraft re-applies the
//! log after it.

// openraft's storage traits fix the error type (StorageError, large); helpers return it as is.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftLogId, RaftSnapshotBuilder};
use tokio::sync::Mutex;

use crate::frame::Frame;
use crate::keeper::Keeper;
use crate::local::{args, LocalConn};
use crate::snapshot_file::{read_snapshot_file, write_atomically, write_snapshot_file};
use crate::types::{
    sm_error, Command, Entry, LogId, Reply, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

/// Keys the node keeps in its own Redis, beside the jobs' `rc:{J}:*` keys.
pub const APPLIED_KEY: &str = "raft:applied";
pub const MEMBERSHIP_KEY: &str = "raft:membership";

/// The state machine; clones share one Redis.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    keeper: Keeper,
    con: Mutex<Option<LocalConn>>,
    /// Held while a snapshot is built or installed (both touch `sm.rdb`).
    snapshot_lock: Mutex<()>,
    /// Last applied index, for status.
    applied_index: AtomicU64,
}

impl StateMachine {
    /// Starts the node's Redis from the last snapshot in `dir` (or empty).
    pub async fn open(dir: &Path) -> anyhow::Result<StateMachine> {
        let redis_dir = dir.join("redis");
        std::fs::create_dir_all(&redis_dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", redis_dir.display()))?;
        // `sm.rdb` is scratch space for BGSAVE; what Redis starts from is the recorded snapshot.
        let rdb = redis_dir.join("sm.rdb");
        match read_snapshot_file(dir)? {
            Some((_, data)) => write_atomically(&rdb, &data)?,
            None => match std::fs::remove_file(&rdb) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    anyhow::bail!("cannot remove stale {}: {e}", rdb.display())
                }
                _ => {}
            },
        }
        let keeper = Keeper::start(redis_dir)?;
        let con = LocalConn::connect(keeper.port, &keeper.password).await?;
        let sm = StateMachine {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                keeper,
                con: Mutex::new(Some(con)),
                snapshot_lock: Mutex::new(()),
                applied_index: AtomicU64::new(0),
            }),
        };
        let (applied, _) = sm
            .read_applied()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        sm.shared
            .applied_index
            .store(applied.map_or(0, |l| l.index), Ordering::Relaxed);
        Ok(sm)
    }

    /// Port and password of the node's Redis (client sessions read from it directly).
    pub fn redis(&self) -> (u16, &str) {
        (self.shared.keeper.port, &self.shared.keeper.password)
    }

    /// The last applied index.
    pub fn applied_index(&self) -> u64 {
        self.shared.applied_index.load(Ordering::Relaxed)
    }

    /// Runs commands on the state machine connection, reconnecting once if it broke.
    async fn call(&self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Frame>, StorageError> {
        let mut bytes = Vec::new();
        for args in commands {
            bytes.extend_from_slice(&Command::from_args(args).resp);
        }
        self.call_raw(&bytes, commands.len()).await
    }

    /// Sends encoded commands on the state machine connection, reconnecting once if it broke.
    async fn call_raw(&self, bytes: &[u8], replies: usize) -> Result<Vec<Frame>, StorageError> {
        let mut guard = self.shared.con.lock().await;
        for attempt in 0..2 {
            if guard.is_none() {
                let (port, password) = self.redis();
                *guard = Some(LocalConn::connect(port, password).await.map_err(|e| {
                    sm_error(format!("cannot reach the node's redis on port {port}: {e}"))
                })?);
            }
            let Some(con) = guard.as_mut() else { continue };
            match con.call_raw(bytes, replies).await {
                Ok(replies) => return Ok(replies),
                Err(e) if attempt == 0 => {
                    tracing::warn!("state machine connection lost ({e}); reconnecting");
                    *guard = None;
                }
                Err(e) => return Err(sm_error(format!("the node's redis failed: {e}"))),
            }
        }
        Err(sm_error("the node's redis is unreachable"))
    }

    async fn read_applied(&self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let replies = self
            .call(&[args(&["GET", APPLIED_KEY]), args(&["GET", MEMBERSHIP_KEY])])
            .await?;
        let applied = match replies.first() {
            Some(Frame::Bulk(b)) => Some(json(b)?),
            _ => None,
        };
        let membership = match replies.get(1) {
            Some(Frame::Bulk(b)) => json(b)?,
            _ => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Applies `entries` in one transaction; returns one reply per entry.
    async fn apply_batch(&self, entries: &[Entry]) -> Result<Vec<Reply>, StorageError> {
        let Some(last) = entries.last().map(|e| *e.get_log_id()) else {
            return Ok(Vec::new());
        };
        let mut bytes = Command::from_args(&args(&["MULTI"])).resp;
        let mut sent = 1;
        // Where each entry's reply sits in EXEC's array (None: the entry sends no command).
        let mut slots = Vec::with_capacity(entries.len());
        let mut queued = 0usize;
        for entry in entries {
            match &entry.payload {
                EntryPayload::Normal(cmd) => {
                    bytes.extend_from_slice(&cmd.resp);
                    slots.push(Some(queued));
                    queued += 1;
                }
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(*entry.get_log_id()), m.clone());
                    let set = vec![b"SET".to_vec(), MEMBERSHIP_KEY.into(), to_json(&stored)?];
                    bytes.extend_from_slice(&Command::from_args(&set).resp);
                    slots.push(None);
                    queued += 1;
                }
                EntryPayload::Blank => {
                    slots.push(None);
                    continue;
                }
            }
            sent += 1;
        }
        let set_applied = vec![b"SET".to_vec(), APPLIED_KEY.into(), to_json(&last)?];
        bytes.extend_from_slice(&Command::from_args(&set_applied).resp);
        bytes.extend_from_slice(&Command::from_args(&args(&["EXEC"])).resp);
        let replies = self.call_raw(&bytes, sent + 2).await?;
        let exec = match replies.last() {
            Some(Frame::Array(items)) => items.clone(),
            // A command refused while queueing aborts the whole transaction (EXECABORT); apply the
            // entries one by one so only the bad one fails (deterministically, on every node).
            Some(Frame::Error(_)) if entries.len() > 1 => return self.apply_singly(entries).await,
            Some(Frame::Error(e)) => {
                // The entry's own queue-time error says more than EXECABORT.
                let queued = &replies[1..replies.len() - 1];
                let reply = queued
                    .iter()
                    .find(|r| r.is_error())
                    .cloned()
                    .unwrap_or_else(|| Frame::error(e.clone()));
                self.call(&[vec![b"SET".to_vec(), APPLIED_KEY.into(), to_json(&last)?]])
                    .await?;
                self.shared
                    .applied_index
                    .store(last.index, Ordering::Relaxed);
                return Ok(vec![Reply(reply.to_bytes())]);
            }
            other => return Err(sm_error(format!("unexpected EXEC reply {other:?}"))),
        };
        self.shared
            .applied_index
            .store(last.index, Ordering::Relaxed);
        Ok(slots
            .into_iter()
            .map(|slot| match slot.and_then(|i| exec.get(i)) {
                Some(frame) => Reply(frame.to_bytes()),
                None => Reply(Frame::ok().to_bytes()),
            })
            .collect())
    }

    async fn apply_singly(&self, entries: &[Entry]) -> Result<Vec<Reply>, StorageError> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut replies = Box::pin(self.apply_batch(std::slice::from_ref(entry))).await?;
            out.append(&mut replies);
        }
        Ok(out)
    }

    /// Waits for the BGSAVE that was started to finish; true if it succeeded.
    async fn wait_bgsave(&self, saves_before: u64) -> Result<(), StorageError> {
        for _ in 0..6000 {
            let info = self.persistence_info().await?;
            let saves: u64 = info_field(&info, "rdb_saves").parse().unwrap_or(0);
            if info_field(&info, "rdb_bgsave_in_progress") == "0" && saves > saves_before {
                if info_field(&info, "rdb_last_bgsave_status") == "ok" {
                    return Ok(());
                }
                return Err(sm_error(
                    "BGSAVE of the node's redis failed: see its redis.log",
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(sm_error(
            "BGSAVE of the node's redis did not finish within 60 s",
        ))
    }

    /// Snapshots the node's Redis has made since it started (`rdb_saves`).
    async fn rdb_saves(&self) -> Result<u64, StorageError> {
        let info = self.persistence_info().await?;
        Ok(info_field(&info, "rdb_saves").parse().unwrap_or(0))
    }

    async fn persistence_info(&self) -> Result<String, StorageError> {
        match self.call(&[args(&["INFO", "persistence"])]).await?.first() {
            Some(Frame::Bulk(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
            other => Err(sm_error(format!("INFO persistence answered {other:?}"))),
        }
    }
}

/// The value of `name:value` in an INFO reply ("" if absent).
fn info_field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes)
        .map_err(|e| sm_error(format!("corrupt raft key in the node's redis: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(sm_error)
}

fn snapshot_io(e: std::io::Error) -> StorageError {
    sm_error(format!("snapshot file: {e}"))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let _building = self.shared.snapshot_lock.lock().await;
        let saves = self.rdb_saves().await?;
        // Read the applied id and fork in one pipeline on the apply connection: no entry can be
        // applied in between, so the RDB holds exactly the state at `last_log_id`.
        let replies = self
            .call(&[
                args(&["GET", APPLIED_KEY]),
                args(&["GET", MEMBERSHIP_KEY]),
                args(&["BGSAVE"]),
            ])
            .await?;
        let last_log_id: Option<LogId> = match replies.first() {
            Some(Frame::Bulk(b)) => Some(json(b)?),
            _ => None,
        };
        let membership: StoredMembership = match replies.get(1) {
            Some(Frame::Bulk(b)) => json(b)?,
            _ => StoredMembership::default(),
        };
        if let Some(Frame::Error(e)) = replies.get(2) {
            return Err(sm_error(format!("BGSAVE refused: {e}")));
        }
        self.wait_bgsave(saves).await?;
        let rdb_path = self.shared.dir.join("redis").join("sm.rdb");
        let rdb = std::fs::read(&rdb_path).map_err(snapshot_io)?;
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: membership,
            snapshot_id: match last_log_id {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
                None => "empty".into(),
            },
        };
        let dir = self.shared.dir.clone();
        tokio::task::block_in_place(|| write_snapshot_file(&dir, &meta, &rdb))
            .map_err(snapshot_io)?;
        tracing::info!("snapshot {} built: {} bytes", meta.snapshot_id, rdb.len());
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(rdb)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.read_applied().await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.apply_batch(&entries).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let _installing = self.shared.snapshot_lock.lock().await;
        let rdb = snapshot.into_inner();
        let dir = self.shared.dir.clone();
        tokio::task::block_in_place(|| {
            write_snapshot_file(&dir, meta, &rdb)?;
            write_atomically(&dir.join("redis").join("sm.rdb"), &rdb)
        })
        .map_err(snapshot_io)?;
        // Restart Redis on the snapshot; the apply connection is re-made on next use.
        let mut con = self.shared.con.lock().await;
        *con = None;
        self.shared.keeper.restart().await.map_err(sm_error)?;
        drop(con);
        let (applied, _) = self.read_applied().await?;
        if applied != meta.last_log_id {
            return Err(sm_error(format!(
                "snapshot {} loaded but the node's redis says applied {applied:?}",
                meta.snapshot_id
            )));
        }
        self.shared
            .applied_index
            .store(applied.map_or(0, |l| l.index), Ordering::Relaxed);
        tracing::info!(
            "installed snapshot {} ({} bytes)",
            meta.snapshot_id,
            rdb.len()
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let dir = self.shared.dir.clone();
        let found = tokio::task::block_in_place(|| read_snapshot_file(&dir))
            .map_err(|e| sm_error(e.to_string()))?;
        Ok(found.map(|(meta, rdb)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(rdb)),
        }))
    }
}
