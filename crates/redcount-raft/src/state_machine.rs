//! openraft's state machine, on top of the project's [`Machine`]: log entries become [`Step`]s (log
//! ids and memberships as JSON the machine stores with its data), and a snapshot is the machine's
//! image plus its meta, kept in `DIR/snapshot.bin`; on start the machine is loaded from it and
//! openraft re-applies the log after it.

// openraft's storage traits fix the error type (StorageError, large); helpers return it as is.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftLogId, RaftSnapshotBuilder};
use tokio::sync::Mutex;

use crate::commands::{route, Route};
use crate::frame::Frame;
use crate::machine::{Machine, Recorded, Step};
use crate::redis_machine::RedisMachine;
use crate::snapshot_file::{read_snapshot_file, write_snapshot_file};
use crate::types::{
    sm_error, Entry, LogId, Reply, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

/// The state machine; clones share one machine.
pub struct StateMachine<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for StateMachine<M> {
    fn clone(&self) -> Self {
        StateMachine {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<M> {
    machine: M,
    /// Where `snapshot.bin` lives.
    dir: PathBuf,
    /// Held while a snapshot is built or installed.
    snapshot_lock: Mutex<()>,
    /// Last applied index, for status.
    applied_index: AtomicU64,
}

impl StateMachine<RedisMachine> {
    /// Starts the node's Redis (in `dir/redis`) from the last snapshot in `dir`, or empty.
    pub async fn open(dir: &Path) -> anyhow::Result<StateMachine<RedisMachine>> {
        let image = read_snapshot_file(dir)?.map(|(_, data)| data);
        let machine = RedisMachine::open(&dir.join("redis"), image.as_deref()).await?;
        StateMachine::new(machine, dir).await
    }
}

impl<M: Machine> StateMachine<M> {
    /// Wraps `machine`, with snapshots kept in `dir`.
    pub async fn new(machine: M, dir: &Path) -> anyhow::Result<StateMachine<M>> {
        let recorded = machine.recorded().await?;
        let (applied, _) = decode(&recorded).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(StateMachine {
            shared: Arc::new(Shared {
                machine,
                dir: dir.to_path_buf(),
                snapshot_lock: Mutex::new(()),
                applied_index: AtomicU64::new(applied.map_or(0, |l| l.index)),
            }),
        })
    }

    pub fn machine(&self) -> &M {
        &self.shared.machine
    }

    /// The last applied index.
    pub fn applied_index(&self) -> u64 {
        self.shared.applied_index.load(Ordering::Relaxed)
    }
}

fn machine_error(e: std::io::Error) -> StorageError {
    sm_error(format!("the state machine: {e}"))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(sm_error)
}

/// What the machine recorded -> openraft's applied log id and membership.
fn decode(recorded: &Recorded) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    let corrupt =
        |e: serde_json::Error| sm_error(format!("corrupt Raft position in the state machine: {e}"));
    let applied = match &recorded.position {
        Some(b) => Some(serde_json::from_slice(b).map_err(corrupt)?),
        None => None,
    };
    let membership = match &recorded.membership {
        Some(b) => serde_json::from_slice(b).map_err(corrupt)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

fn snapshot_io(e: std::io::Error) -> StorageError {
    sm_error(format!("snapshot file: {e}"))
}

impl<M: Machine> RaftSnapshotBuilder<TypeConfig> for StateMachine<M> {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let _building = self.shared.snapshot_lock.lock().await;
        let (recorded, image) = self.shared.machine.dump().await.map_err(machine_error)?;
        let (last_log_id, membership) = decode(&recorded)?;
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: membership,
            snapshot_id: match last_log_id {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
                None => "empty".into(),
            },
        };
        let dir = self.shared.dir.clone();
        tokio::task::block_in_place(|| write_snapshot_file(&dir, &meta, &image))
            .map_err(snapshot_io)?;
        tracing::info!("snapshot {} built: {} bytes", meta.snapshot_id, image.len());
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(image)),
        })
    }
}

impl<M: Machine> RaftStateMachine<TypeConfig> for StateMachine<M> {
    type SnapshotBuilder = StateMachine<M>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let recorded = self
            .shared
            .machine
            .recorded()
            .await
            .map_err(machine_error)?;
        decode(&recorded)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.get_log_id().index) else {
            return Ok(Vec::new());
        };
        // The machine stores positions and memberships as given: openraft's own JSON.
        let mut positions = Vec::with_capacity(entries.len());
        let mut memberships = Vec::with_capacity(entries.len());
        for entry in &entries {
            positions.push(to_json(entry.get_log_id())?);
            memberships.push(match &entry.payload {
                EntryPayload::Membership(m) => Some(to_json(&StoredMembership::new(
                    Some(*entry.get_log_id()),
                    m.clone(),
                ))?),
                _ => None,
            });
        }
        // Defence in depth: an entry is applied only if it is a write this node would accept from
        // a client (a forged or corrupted entry changes nothing; every node decides alike).
        let refused: Vec<bool> = entries
            .iter()
            .map(|entry| match &entry.payload {
                EntryPayload::Normal(cmd) => !cmd
                    .args()
                    .is_some_and(|args| matches!(route(&args), Route::Write { .. })),
                _ => false,
            })
            .collect();
        let steps: Vec<Step<'_>> = entries
            .iter()
            .zip(positions.iter().zip(&memberships))
            .zip(&refused)
            .map(|((entry, (position, membership)), &refused)| Step {
                command: match &entry.payload {
                    EntryPayload::Normal(cmd) if !refused => Some(cmd.resp.as_slice()),
                    _ => None,
                },
                membership: membership.as_deref(),
                position,
            })
            .collect();
        let mut replies = self
            .shared
            .machine
            .apply(&steps)
            .await
            .map_err(machine_error)?;
        for (reply, &refused) in replies.iter_mut().zip(&refused) {
            if refused {
                *reply = Frame::error(
                    "ERR raft: a log entry that is not an accepted write was not applied",
                )
                .to_bytes();
            }
        }
        self.shared.applied_index.store(last, Ordering::Relaxed);
        Ok(replies.into_iter().map(Reply).collect())
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
        let image = snapshot.into_inner();
        let dir = self.shared.dir.clone();
        tokio::task::block_in_place(|| write_snapshot_file(&dir, meta, &image))
            .map_err(snapshot_io)?;
        let recorded = self
            .shared
            .machine
            .restore(&image)
            .await
            .map_err(machine_error)?;
        let (applied, _) = decode(&recorded)?;
        if applied != meta.last_log_id {
            return Err(sm_error(format!(
                "snapshot {} loaded but the state machine says applied {applied:?}",
                meta.snapshot_id
            )));
        }
        self.shared
            .applied_index
            .store(applied.map_or(0, |l| l.index), Ordering::Relaxed);
        tracing::info!(
            "installed snapshot {} ({} bytes)",
            meta.snapshot_id,
            image.len()
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let dir = self.shared.dir.clone();
        let found = tokio::task::block_in_place(|| read_snapshot_file(&dir))
            .map_err(|e| sm_error(e.to_string()))?;
        Ok(found.map(|(meta, image)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(image)),
        }))
    }
}
