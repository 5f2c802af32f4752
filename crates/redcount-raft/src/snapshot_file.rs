//! The node's snapshot on disk: `DIR/snapshot.bin` holds the snapshot's meta (last applied log id,
//! membership, id) and the RDB of the node's Redis at that point, in one file replaced atomically, so
//! meta and data can never disagree after a crash.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::types::SnapshotMeta;

/// `DIR/snapshot.bin`: `[meta length u32 LE][meta JSON][RDB bytes]`, replaced atomically.
pub fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("snapshot.bin")
}

pub fn read_snapshot_file(dir: &Path) -> anyhow::Result<Option<(SnapshotMeta, Vec<u8>)>> {
    let path = snapshot_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let corrupt = || {
        anyhow::anyhow!(
            "{} is corrupt; wipe the node's directory so it rejoins from a peer",
            path.display()
        )
    };
    let len = bytes.get(..4).ok_or_else(corrupt)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let meta = bytes.get(4..4 + len).ok_or_else(corrupt)?;
    let meta: SnapshotMeta = serde_json::from_slice(meta).map_err(|_| corrupt())?;
    Ok(Some((meta, bytes[4 + len..].to_vec())))
}

pub fn write_snapshot_file(dir: &Path, meta: &SnapshotMeta, rdb: &[u8]) -> std::io::Result<()> {
    let meta = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(4 + meta.len() + rdb.len());
    bytes.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&meta);
    bytes.extend_from_slice(rdb);
    write_atomically(&snapshot_path(dir), &bytes)
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
