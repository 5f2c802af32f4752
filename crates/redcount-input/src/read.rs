//! Reading one task's bytes, in the worker.

use std::fs::File;
use std::os::unix::fs::FileExt;

use redcount_protocol::Task;

use crate::InputError;

/// Reads the task's byte range into `buf` (replacing its contents). A file that no longer has those
/// bytes is an error: it changed after the job was planned.
pub fn read_task(task: &Task, buf: &mut Vec<u8>) -> Result<(), InputError> {
    let path = &task.path;
    let file = File::open(path).map_err(|e| InputError::from_io(path, e))?;
    let size = file
        .metadata()
        .map_err(|e| InputError::from_io(path, e))?
        .len();
    let changed = || InputError::Changed {
        path: path.clone(),
        size,
        start: task.start,
        end: task.end,
    };
    if size < task.end {
        return Err(changed());
    }
    let len = usize::try_from(task.len()).map_err(|_| changed())?;
    buf.clear();
    buf.resize(len, 0);
    file.read_exact_at(buf, task.start)
        .map_err(|e| InputError::from_io(path, e))
}
