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
