//! Reading one task's bytes, in the worker.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::InputError;

/// Reads bytes `start..end` of `path` (a task's range) into `buf`, replacing its contents. A file that
/// no longer has those bytes is an error: it changed after the job was planned.
pub fn read_range(path: &Path, start: u64, end: u64, buf: &mut Vec<u8>) -> Result<(), InputError> {
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
