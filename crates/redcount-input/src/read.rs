//! Reading one task's bytes, in the worker, from a local file or an object ([`crate::object`]).

use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::fs::FileExt;
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
    let Some(planned) = version else {
        return Ok(());
    };
    let meta = file.metadata().map_err(|e| InputError::from_io(path, e))?;
    let now = local_version(&meta);
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
    // Checked before opening: opening a FIFO would block until something writes to it.
    let meta = std::fs::metadata(path).map_err(|e| InputError::from_io(path, e))?;
    if !meta.is_file() {
        return Err(InputError::from_io(
            path,
            std::io::Error::other("not a regular file (a FIFO, socket, device or directory)"),
        ));
    }
    let file = File::open(path).map_err(|e| InputError::from_io(path, e))?;
    check_version(path, version, &file)?;
    let size = file
        .metadata()
        .map_err(|e| InputError::from_io(path, e))?
        .len();
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
    buf.clear();
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
/// [`MAX_WORD`], reading them in bounded pieces (only a range longer than that can hold one: its
/// planner found no whitespace to cut at).
pub fn check_word_lengths(path: &Path, start: u64, end: u64) -> Result<(), InputError> {
    if end.saturating_sub(start) <= MAX_WORD {
        return Ok(());
    }
    let file = File::open(path).map_err(|e| InputError::from_io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut at, mut word_start) = (start, start);
    while at < end {
        let want = usize::try_from((end - at).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file
            .read_at(&mut buf[..want], at)
            .map_err(|e| InputError::from_io(path, e))?;
        if n == 0 {
            break;
        }
        word_start = scan_words(path, &buf[..n], at, word_start)?;
        at += n as u64;
    }
    Ok(())
}

/// [`check_word_lengths`] over bytes already read (an object's), `data` starting at byte `offset`.
pub fn check_word_lengths_in(path: &Path, data: &[u8], offset: u64) -> Result<(), InputError> {
    if data.len() as u64 <= MAX_WORD {
        return Ok(());
    }
    scan_words(path, data, offset, offset).map(|_| ())
}

/// Follows the words of `data` (at byte `offset` of the input; the word in progress began at
/// `word_start`): where the last one begins, or an error at the first longer than [`MAX_WORD`].
fn scan_words(
    path: &Path,
    data: &[u8],
    offset: u64,
    mut word_start: u64,
) -> Result<u64, InputError> {
    for (i, &b) in data.iter().enumerate() {
        if redcount_count::is_space(b) {
            let at = offset + i as u64;
            if at - word_start > MAX_WORD {
                return Err(InputError::WordTooLong {
                    path: path.to_path_buf(),
                    at: word_start,
                });
            }
            word_start = at + 1;
        }
    }
    let end = offset + data.len() as u64;
    if end - word_start > MAX_WORD {
        return Err(InputError::WordTooLong {
            path: path.to_path_buf(),
            at: word_start,
        });
    }
    Ok(word_start)
}
