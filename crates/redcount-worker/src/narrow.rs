//! Narrowing down an input that kills its workers: a task handed out alone after its holder fell
//! silent counting it (a charge) is split in two instead of counted (library/failures.lua, `rc_split`), as
//! Hadoop's skip mode narrows down bad records, until the piece that kills workers is one file or
//! one range of at most [`SMALLEST_SPLIT`]; only such a piece is given up after `--max-attempts`,
//! and everything packed or planned with it is counted.

use redcount_input::split::cut_range;
use redcount_protocol::Task;

/// A range this long or shorter is not split again: it is named, with its offsets, if it is
/// given up.
pub const SMALLEST_SPLIT: u64 = 64 << 10;

/// The most splits between a task and its smallest piece: a packed task of 2,000 files halves 11
/// times to one file, a range of 64 MiB 10 times to 64 KiB. Each costs the life of the worker
/// that held it, so a driver restarts that many workers more than for a task given up whole.
pub const MAX_SPLIT_DEPTH: usize = 21;

/// Where to split `task`, if it was charged and can be split: the number of files in its first
/// part (a task of several files), or a byte offset (a task of one range longer than
/// [`SMALLEST_SPLIT`], cut where planning could have cut it). None: count it as it is.
pub(crate) fn cut_for(task: &Task) -> Option<u64> {
    if !task.solo || task.charged == 0 {
        return None;
    }
    let pieces = 1 + task.more.len() as u64;
    if pieces >= 2 {
        return Some(pieces / 2);
    }
    // A compressed input is one stream: it cannot be cut, and is given up whole.
    if task.end - task.start <= SMALLEST_SPLIT
        || redcount_input::compressed::Compression::of(&task.path).is_some()
    {
        return None;
    }
    // An input that cannot be read to find a cut is counted as it is: it fails by name there.
    cut_range(
        &task.path,
        task.version.as_deref(),
        task.format,
        task.start,
        task.end,
    )
    .ok()
    .flatten()
}
