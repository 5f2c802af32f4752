//! Reading one task's bytes, in the worker, from a local file or an object ([`crate::object`]).

use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

/// `O_NONBLOCK` (Linux): opening a FIFO returns at once instead of waiting for a writer.
const O_NONBLOCK: i32 = 0o4000;
use std::path::Path;

use crate::object::{is_object, ObjectReader};
use crate::InputError;

/// Something read front to back and sought in: a local file or an object.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// Opens an input to read it front to back: the file, or the object at `path` in its planned
/// `version`, `size` bytes long (reads stop there). A local file that is no longer the planned
/// version is an error.
pub fn open(
    path: &Path,
    version: Option<&str>,
    size: u64,
) -> Result<Box<dyn ReadSeek>, InputError> {
    if is_object(path) {
        return Ok(Box::new(ObjectReader::new(path, version, size)));
    }
    let file = File::open(path).map_err(|e| InputError::from_io(path, e))?;
    check_version(path, version, &file)?;
    Ok(Box::new(file))
}

/// The version of a local file as planning records it in its tasks: its size, modification time
/// (to the nanosecond) and inode. A file rewritten in place has another modification time; one
/// replaced (`mv`, an editor's save) another inode. (Not the device: a file shared over NFS has
/// another device number on every host.)
pub fn local_version(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "f{}:{}.{:09}:{}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    )
}

/// Checks that the open `file` is still the `version` planned (None: nothing was recorded, as by
/// an older version: not checked).
fn check_version(path: &Path, version: Option<&str>, file: &File) -> Result<(), InputError> {
    if version.is_none() {
        return Ok(());
    }
    let meta = file.metadata().map_err(|e| InputError::from_io(path, e))?;
    same_version(path, version, &meta)
}

/// [`check_version`] on metadata already read.
fn same_version(
    path: &Path,
    version: Option<&str>,
    meta: &std::fs::Metadata,
) -> Result<(), InputError> {
    let Some(planned) = version else {
        return Ok(());
    };
    let now = local_version(meta);
    if now == planned {
        return Ok(());
    }
    Err(InputError::Replaced {
        path: path.to_path_buf(),
        detail: describe_change(planned, &now),
    })
}

/// What differs between two local versions, in words.
fn describe_change(planned: &str, now: &str) -> String {
    let parts = |v: &str| -> Vec<String> {
        v.trim_start_matches('f')
            .split(':')
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (parts(planned), parts(now));
    let mut what = Vec::new();
    if a.first() != b.first() {
        what.push(format!(
            "{} bytes, planned with {}",
            b.first().map_or("?", String::as_str),
            a.first().map_or("?", String::as_str)
        ));
    }
    if a.get(2) != b.get(2) {
        what.push("it was replaced by another file (new inode)".to_string());
    } else if a.get(1) != b.get(1) {
        what.push("it was modified (new modification time)".to_string());
    }
    what.join(", ")
}

/// Bytes at the start of an input that tell binary from text.
pub const BINARY_PROBE: u64 = 8192;

/// True when the input a range is from looks binary: a NUL byte in its first [`BINARY_PROBE`]
/// bytes (the rule of grep and ripgrep; text in UTF-8 or any ASCII superset has none). `data` is
/// the range's bytes, from `start`: a range at the start of its input needs no other read, any
/// other reads the input's head, so every range of a binary input is told alike.
pub fn looks_binary(
    path: &Path,
    version: Option<&str>,
    start: u64,
    data: &[u8],
) -> Result<bool, InputError> {
    if start == 0 {
        let probe = data.len().min(BINARY_PROBE as usize);
        return Ok(data[..probe].contains(&0));
    }
    let mut head = Vec::new();
    read_range(path, version, 0, start.min(BINARY_PROBE), &mut head)?;
    Ok(head.contains(&0))
}

/// Reads bytes `start..end` of `path` (a task's range) into `buf`, replacing its contents. An input
/// that no longer has those bytes (or, for an object, is no longer the planned `version`) is an
/// error: it changed after the job was planned.
pub fn read_range(
    path: &Path,
    version: Option<&str>,
    start: u64,
    end: u64,
    buf: &mut Vec<u8>,
) -> Result<(), InputError> {
    if is_object(path) {
        return crate::object::read_range(path, version, start, end, buf);
    }
    // Opened without blocking (a FIFO would wait for a writer) and `fstat`ed once: that one
    // metadata says it is a regular file, is the version planned, and how long it is. With tiny
    // files the syscalls per file are most of a worker's time: stat, open, fstat twice and read
    // became open, fstat, read and one fstat after.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .map_err(|e| InputError::from_io(path, e))?;
    let meta = file.metadata().map_err(|e| InputError::from_io(path, e))?;
    if !meta.is_file() {
        return Err(InputError::from_io(
            path,
            std::io::Error::other("not a regular file (a FIFO, socket, device or directory)"),
        ));
    }
    same_version(path, version, &meta)?;
    let size = meta.len();
    let changed = || InputError::Changed {
        path: path.to_path_buf(),
        size,
        start,
        end,
    };
    if size < end || end < start {
        return Err(changed());
    }
    let len = usize::try_from(end - start).map_err(|_| changed())?;
    // Every byte is overwritten by the read: no need to zero what the buffer already holds.
    buf.resize(len, 0);
    file.read_exact_at(buf, start)
        .map_err(|e| InputError::from_io(path, e))?;
    // Written to while it was read: what was read may mix the two.
    check_version(path, version, &file)
}

/// The longest word redcount counts (64 MiB). Every word is kept in Redis, in blobs of one
/// partition's words (a Redis string stops at 512 MB), and copied a few times on the way: an input
/// with a longer run of bytes without whitespace is not text, and is reported failed by name
/// instead of filling a worker's memory.
pub const MAX_WORD: u64 = 64 << 20;

/// Checks that bytes `start..end` of the local file at `path` hold no word longer than
/// [`MAX_WORD`] (only a range longer than that can hold one: its planner found no whitespace to
/// cut at).
pub fn check_word_lengths(path: &Path, start: u64, end: u64) -> Result<(), InputError> {
    if end.saturating_sub(start) <= MAX_WORD {
        return Ok(());
    }
    let file = File::open(path).map_err(|e| InputError::from_io(path, e))?;
    check_around_grid(path, start, end, MAX_WORD, &mut |at, buf| {
        file.read_at(buf, at)
            .map_err(|e| InputError::from_io(path, e))
    })
}

/// [`check_word_lengths`] over bytes already read (an object's), `data` starting at byte `offset`.
pub fn check_word_lengths_in(path: &Path, data: &[u8], offset: u64) -> Result<(), InputError> {
    if data.len() as u64 <= MAX_WORD {
        return Ok(());
    }
    let end = offset + data.len() as u64;
    check_around_grid(path, offset, end, MAX_WORD, &mut |at, buf| {
        let from = (at - offset) as usize;
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    })
}

/// Reads up to `buf.len()` bytes at an offset (of a file, or of bytes in memory).
type ReadAt<'a> = dyn FnMut(u64, &mut [u8]) -> Result<usize, InputError> + 'a;

/// Bytes read at a time while looking for whitespace around a grid point.
const PROBE: usize = 64 << 10;

/// A word longer than `limit` ([`MAX_WORD`]) covers one of the points `start + k * limit / 2`: so the
/// word at each such point is measured, looking back and ahead from it for whitespace, instead of
/// reading the whole range once more before it is counted (on text, a few bytes per point: that
/// read cost a third of a worker's time on a job of large files).
fn check_around_grid(
    path: &Path,
    start: u64,
    end: u64,
    limit: u64,
    read_at: &mut ReadAt<'_>,
) -> Result<(), InputError> {
    let mut buf = vec![0u8; PROBE];
    let mut point = start;
    while point < end {
        // The first whitespace at or after the point (or the range's end)...
        let mut after = point;
        'ahead: while after < end && after - point <= limit {
            let want = ((end - after) as usize).min(PROBE);
            let n = read_at(after, &mut buf[..want])?;
            if n == 0 {
                break;
            }
            if let Some(i) = buf[..n].iter().position(|&b| redcount_count::is_space(b)) {
                after += i as u64;
                break 'ahead;
            }
            after += n as u64;
        }
        // ...and the last one before it (or the range's start).
        let mut begin = point;
        'back: while begin > start && point - begin <= limit {
            let from = begin.saturating_sub(PROBE as u64).max(start);
            let want = (begin - from) as usize;
            let n = read_at(from, &mut buf[..want])?;
            if let Some(i) = buf[..n].iter().rposition(|&b| redcount_count::is_space(b)) {
                begin = from + i as u64 + 1;
                break 'back;
            }
            begin = from;
        }
        if after - begin > limit {
            return Err(InputError::WordTooLong {
                path: path.to_path_buf(),
                at: begin,
            });
        }
        point += limit / 2;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every run of non-whitespace longer than `limit`, whatever its place, and none shorter.
    #[test]
    fn the_grid_check_finds_exactly_the_words_over_the_limit() {
        let path = Path::new("t.txt");
        let limit = 1_000u64;
        for len in [999usize, 1_000, 1_001, 2_500, 70_000, 140_000] {
            for at in [0usize, 1, 499, 500, 501, 1_234, 150_000 - len.min(150_000)] {
                let mut data = vec![b' '; 150_000];
                for (i, b) in data.iter_mut().enumerate() {
                    *b = if i % 7 == 6 { b'\n' } else { b'a' };
                }
                let at = at.min(data.len() - len);
                data[at..at + len].fill(b'x');
                // Whitespace right around the run, so it is one word of exactly `len` bytes.
                if at > 0 {
                    data[at - 1] = b' ';
                }
                if at + len < data.len() {
                    data[at + len] = b' ';
                }
                let got = check_around_grid(path, 0, data.len() as u64, limit, &mut |o, buf| {
                    let n = buf.len().min(data.len() - o as usize);
                    buf[..n].copy_from_slice(&data[o as usize..o as usize + n]);
                    Ok(n)
                });
                match got {
                    Err(InputError::WordTooLong { at: found, .. }) => {
                        assert!(len as u64 > limit, "len {len} at {at}: refused");
                        assert_eq!(found, at as u64, "len {len} at {at}");
                    }
                    Ok(()) => assert!(len as u64 <= limit, "len {len} at {at}: missed"),
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
}
