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
/// `version`, `size` bytes long (reads stop there).
pub fn open(
    path: &Path,
    version: Option<&str>,
    size: u64,
) -> Result<Box<dyn ReadSeek>, InputError> {
    if is_object(path) {
        return Ok(Box::new(ObjectReader::new(path, version, size)));
    }
    Ok(Box::new(
        File::open(path).map_err(|e| InputError::from_io(path, e))?,
    ))
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
        .map_err(|e| InputError::from_io(path, e))
}
