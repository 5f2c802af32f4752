//! Planning: files -> tasks. Small files are one task each; large text files are cut at whitespace into
//! tasks of about `split_bytes`, so one huge file keeps every worker busy.

use std::path::PathBuf;

use redcount_input::{split::split_file, FormatChoice, InputError};
use redcount_protocol::NewTask;

/// The split size when the user sets none: about four tasks per worker, between 1 MiB and 64 MiB.
/// Bigger tasks mean fewer commits, and Redis pays per distinct word of every commit.
pub fn default_split_bytes(total_bytes: u64, workers: usize) -> u64 {
    (total_bytes / (4 * workers.max(1) as u64)).clamp(1 << 20, 64 << 20)
}

/// The files with their sizes. A file that cannot be stat'ed now still becomes a task: its worker
/// will report why it cannot be read (it vanished, or is unreadable) in the dead stream.
pub fn sizes(files: &[PathBuf]) -> Vec<(PathBuf, u64)> {
    files
        .iter()
        .map(|f| {
            (
                f.clone(),
                std::fs::metadata(f).map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect()
}

/// Cuts every file into tasks numbered from `first_seq`.
pub fn plan_tasks(
    files: &[(PathBuf, u64)],
    format: FormatChoice,
    split_bytes: u64,
    first_seq: u64,
) -> Vec<NewTask> {
    let mut tasks = Vec::with_capacity(files.len());
    let mut seq = first_seq;
    for (path, size) in files {
        let format = format.for_path(path);
        // A file we cannot open for splitting stays one task; the worker reports the error.
        let ranges = split_file(path, *size, format, split_bytes)
            .unwrap_or_else(|_: InputError| vec![(0, *size)]);
        for (start, end) in ranges {
            tasks.push(NewTask {
                seq,
                path: path.clone(),
                start,
                end,
                format,
            });
            seq += 1;
        }
    }
    tasks
}
