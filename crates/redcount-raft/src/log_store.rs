//! The durable Raft log and vote. The log is one append-only file of checksummed records (append
//! entries, truncate, purge); a torn record at the tail (a crash mid-write) is cut off on start. The
//! vote is a small file replaced atomically. Entries are also kept in memory, where replication reads
//! them.
//!
//! Appends are written at once and fsynced by a flusher thread, which tells openraft the entries are
//! persisted only after the fsync: meanwhile the leader already sends them to followers (Raft counts
//! the leader in a quorum only once its own copy is durable), and appends that arrive during one fsync
//! share the next one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogId, RaftLogReader};
use serde::{Deserialize, Serialize};

use crate::types::{log_error, Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

/// Rewrite the file without purged entries once it has grown past this.
const COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
enum Record {
    Append(Vec<Entry>),
    /// Removes entries from this index on (a conflicting suffix).
    Truncate(u64),
    /// Removes entries up to and including this log id.
    Purge(LogId),
}

/// The log store; clones share one log.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    /// Appends waiting for their fsync, in order.
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
}

struct Inner {
    path: PathBuf,
    vote_path: PathBuf,
    file: File,
    file_len: u64,
    /// Size right after the last compaction: compact again only when the file has doubled.
    compacted_len: u64,
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
}

impl LogStore {
    /// Opens (or creates) the log under `dir`, replaying it into memory.
    pub fn open(dir: &Path) -> anyhow::Result<LogStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join("raft-log.bin");
        let vote_path = dir.join("raft-vote.json");
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open the Raft log {}: {e}", path.display()))?;
        let (records, good_len) = read_records(&mut file, &path)?;
        let file_len = file.metadata()?.len();
        if good_len < file_len {
            tracing::warn!(
                "{}: cutting a torn record at byte {good_len} (a crash during a write)",
                path.display()
            );
            file.set_len(good_len)?;
            file.sync_all()?;
        }
        let mut inner = Inner {
            path,
            vote_path: vote_path.clone(),
            file,
            file_len: good_len,
            compacted_len: good_len,
            entries: BTreeMap::new(),
            last_purged: None,
            vote: None,
        };
        for record in records {
            inner.replay(record);
        }
        inner.vote = match std::fs::read(&vote_path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is corrupt ({e}); restore it or wipe the node's directory",
                    vote_path.display()
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => anyhow::bail!("cannot read {}: {e}", vote_path.display()),
        };
        let inner = Arc::new(Mutex::new(inner));
        let flusher = start_flusher(inner.clone())?;
        Ok(LogStore { inner, flusher })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data: every write finishes before memory changes.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last log index.
    #[cfg(test)]
    fn last_index(&self) -> Option<u64> {
        let inner = self.lock();
        inner
            .entries
            .keys()
            .next_back()
            .copied()
            .or(inner.last_purged.map(|l| l.index))
    }
}

impl Inner {
    fn replay(&mut self, record: Record) {
        match record {
            Record::Append(entries) => {
                for entry in entries {
                    self.entries.insert(entry.get_log_id().index, entry);
                }
            }
            Record::Truncate(index) => {
                self.entries.split_off(&index);
            }
            Record::Purge(log_id) => {
                self.entries = self.entries.split_off(&(log_id.index + 1));
                self.last_purged = Some(log_id);
            }
        }
    }

    /// Appends a record, and fsyncs it if `sync` (appends are synced by the flusher instead).
    fn write(&mut self, record: &Record, sync: bool) -> std::io::Result<()> {
        let body = bincode::serialize(record).map_err(std::io::Error::other)?;
        let frame = frame(&body);
        self.file.write_all(&frame)?;
        if sync {
            self.file.sync_data()?;
        }
        self.file_len += frame.len() as u64;
        Ok(())
    }

    /// Rewrites the file with only the live entries (after purges made most of it garbage).
    fn compact(&mut self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("bin.tmp");
        let mut out = File::create(&tmp)?;
        let mut len = 0u64;
        if let Some(purged) = self.last_purged {
            let f =
                frame(&bincode::serialize(&Record::Purge(purged)).map_err(std::io::Error::other)?);
            out.write_all(&f)?;
            len += f.len() as u64;
        }
        let live: Vec<Entry> = self.entries.values().cloned().collect();
        for chunk in live.chunks(256) {
            let body = bincode::serialize(&Record::Append(chunk.to_vec()))
                .map_err(std::io::Error::other)?;
            let f = frame(&body);
            out.write_all(&f)?;
            len += f.len() as u64;
        }
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        sync_dir(&self.path)?;
        self.file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(&self.path)?;
        self.file_len = len;
        self.compacted_len = len;
        Ok(())
    }
}

/// The fsync thread: takes every append waiting, fsyncs once, then reports them persisted in order.
/// It ends when the last [`LogStore`] clone is dropped.
fn start_flusher(inner: Arc<Mutex<Inner>>) -> anyhow::Result<mpsc::Sender<LogFlushed<TypeConfig>>> {
    let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
    std::thread::Builder::new()
        .name("raft-log-fsync".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                // The handle is taken after the batch: every write in it is in the file this names
                // (a compaction in between wrote and synced a new file that holds them).
                let file = inner
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .file
                    .try_clone();
                let result = file.and_then(|f| f.sync_data());
                for done in batch {
                    done.log_io_completed(match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(std::io::Error::new(
                            e.kind(),
                            format!("fsync of the Raft log: {e}"),
                        )),
                    });
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the log's fsync thread: {e}"))?;
    Ok(tx)
}

/// `[len u32 LE][crc32 u32 LE][body]`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads every whole record; returns them and the length of the file they fill.
fn read_records(file: &mut File, path: &Path) -> anyhow::Result<(Vec<Record>, u64)> {
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&*file);
    let mut records = Vec::new();
    let mut good = 0u64;
    loop {
        let mut head = [0u8; 8];
        if reader.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() || crc32fast::hash(&body) != crc {
            break;
        }
        match bincode::deserialize(&body) {
            Ok(record) => records.push(record),
            Err(e) => anyhow::bail!(
                "{}: record at byte {good} does not decode ({e}); was it written by another redcount version?",
                path.display()
            ),
        }
        good += 8 + len as u64;
    }
    Ok((records, good))
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Blocking file IO inside the async storage API: fine on the multi-threaded runtime the node uses.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Replication sends at most this many bytes of entries per AppendEntries (always at least one
/// entry). openraft 0.9 gives every AppendEntries the heartbeat interval to complete; a catching-up
/// follower sent hundreds of large commits at once would time out on every attempt, forever.
const MAX_APPEND_BYTES: usize = 512 * 1024;

/// Roughly the bytes an entry takes on the wire.
fn entry_size(entry: &Entry) -> usize {
    match &entry.payload {
        openraft::EntryPayload::Normal(cmd) => cmd.resp.len() + 64,
        _ => 256,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.lock();
        let mut out = Vec::new();
        let mut bytes = 0;
        for (_, entry) in inner.entries.range(start..end) {
            let size = entry_size(entry);
            if !out.is_empty() && bytes + size > MAX_APPEND_BYTES {
                break;
            }
            bytes += size;
            out.push(entry.clone());
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let path = inner.vote_path.clone();
        blocking(|| -> std::io::Result<()> {
            let tmp = path.with_extension("json.tmp");
            let mut f = File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(vote).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(&path)
        })
        .map_err(|e| openraft::StorageIOError::<NodeId>::write_vote(openraft::AnyError::new(&e)))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut inner = self.lock();
        let record = Record::Append(entries);
        if let Err(e) = inner.write(&record, false) {
            let message = format!("appending to {}: {e}", inner.path.display());
            callback.log_io_completed(Err(std::io::Error::other(message.clone())));
            return Err(log_error(std::io::Error::other(message)));
        }
        inner.replay(record);
        drop(inner);
        if let Err(mpsc::SendError(callback)) = self.flusher.send(callback) {
            callback.log_io_completed(Err(std::io::Error::other("the log's fsync thread ended")));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let record = Record::Truncate(log_id.index);
        blocking(|| inner.write(&record, true)).map_err(log_error)?;
        inner.replay(record);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let record = Record::Purge(log_id);
        blocking(|| inner.write(&record, true)).map_err(log_error)?;
        inner.replay(record);
        if inner.file_len > inner.compacted_len * 2 + COMPACT_AFTER_BYTES {
            blocking(|| inner.compact()).map_err(log_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Command;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        range
            .map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                payload: EntryPayload::Normal(Command::from_args(
                    &[format!("cmd{i}").into_bytes()],
                )),
            })
            .collect()
    }

    #[test]
    fn a_torn_tail_is_cut_and_everything_before_it_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("raft-log.bin");
        {
            let store = LogStore::open(dir.path()).expect("open");
            let mut inner = store.lock();
            inner
                .write(&Record::Append(entries(1..=3)), true)
                .expect("write");
            inner.write(&Record::Truncate(3), true).expect("truncate");
        }
        let good = std::fs::metadata(&path).expect("log file").len();
        // A crash in the middle of the next record: its header promises more than was written.
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open log");
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9])
            .expect("torn write");
        drop(f);

        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(store.last_index(), Some(2), "entries 1-2 kept, 3 truncated");
        assert_eq!(
            std::fs::metadata(&path).expect("log").len(),
            good,
            "torn tail cut"
        );
        store
            .lock()
            .write(&Record::Append(entries(3..=4)), true)
            .expect("append after recovery");
        drop(store);
        let store = LogStore::open(dir.path()).expect("reopen again");
        assert_eq!(store.last_index(), Some(4));
        let kept: Vec<u64> = store.lock().entries.keys().copied().collect();
        assert_eq!(kept, vec![1, 2, 3, 4]);
    }

    #[test]
    fn purge_survives_a_restart_and_compaction() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store = LogStore::open(dir.path()).expect("open");
            let mut inner = store.lock();
            inner
                .write(&Record::Append(entries(1..=10)), true)
                .expect("write");
            let purge = Record::Purge(LogId::new(CommittedLeaderId::new(1, 1), 6));
            inner.write(&purge, true).expect("purge");
            inner.replay(Record::Append(entries(1..=10)));
            inner.replay(purge);
            inner.compact().expect("compact");
        }
        let store = LogStore::open(dir.path()).expect("reopen");
        let inner = store.lock();
        assert_eq!(inner.last_purged.map(|l| l.index), Some(6));
        assert_eq!(
            inner.entries.keys().copied().collect::<Vec<_>>(),
            vec![7, 8, 9, 10]
        );
    }
}
