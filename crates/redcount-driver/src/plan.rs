//! Planning: inputs (files and objects) -> tasks. Small inputs are one task each; large ones are cut
//! at whitespace (between records in CSV) into tasks of about `split_bytes`, so one huge input keeps
//! every worker busy.

use redcount_input::{split::split_file, FormatChoice, InputError, InputFile};
use redcount_protocol::{NewTask, Piece, PlanFacts};

/// The split size when the user sets none: about four tasks per worker, between 1 MiB and 64 MiB.
/// Bigger tasks mean fewer commits, and Redis pays per distinct word of every commit.
pub fn default_split_bytes(total_bytes: u64, workers: usize) -> u64 {
    (total_bytes / (4 * workers.max(1) as u64)).clamp(1 << 20, 64 << 20)
}

/// Cuts every input into tasks numbered from `first_seq`.
pub fn plan_tasks(
    files: &[InputFile],
    format: FormatChoice,
    split_bytes: u64,
    first_seq: u64,
) -> Vec<NewTask> {
    let mut tasks = Vec::with_capacity(files.len());
    let mut seq = first_seq;
    for file in files {
        let format = format.for_path(&file.path);
        // An input we cannot open for splitting stays one task; the worker reports the error.
        let ranges = split_file(file, format, split_bytes)
            .unwrap_or_else(|_: InputError| vec![(0, file.size)]);
        for (start, end) in ranges {
            tasks.push(NewTask {
                seq,
                path: file.path.clone(),
                start,
                end,
                format,
                version: file.version.clone(),
                more: Vec::new(),
                due_ms: None,
            });
            seq += 1;
        }
    }
    tasks
}

/// Most files packed into one task: keeps every call that carries a task's ranges small.
pub const MAX_PIECES: usize = 2000;

/// Packs tasks smaller than `pack_bytes` together, in order, into tasks of up to `pack_bytes` and
/// [`MAX_PIECES`] ranges (as Hadoop's CombineFileInputFormat does), so that Redis's bookkeeping is paid
/// per task of about `pack_bytes`, not per small file; larger tasks stay alone. Renumbers from the
/// first task's seq.
pub fn pack_tasks(tasks: Vec<NewTask>, pack_bytes: u64) -> Vec<NewTask> {
    let Some(first_seq) = tasks.first().map(|t| t.seq) else {
        return tasks;
    };
    let size = |t: &NewTask| t.end - t.start;
    let mut out: Vec<NewTask> = Vec::new();
    // The packed task being filled, and its bytes so far.
    let mut open: Option<(NewTask, u64)> = None;
    for task in tasks {
        let bytes = size(&task);
        if bytes >= pack_bytes {
            out.push(task);
            continue;
        }
        match &mut open {
            Some((packed, total))
                if *total + bytes <= pack_bytes && packed.more.len() + 1 < MAX_PIECES =>
            {
                packed.more.push(Piece {
                    path: task.path,
                    start: task.start,
                    end: task.end,
                    format: task.format,
                    version: task.version,
                });
                *total += bytes;
            }
            _ => {
                if let Some((full, _)) = open.take() {
                    out.push(full);
                }
                open = Some((task, bytes));
            }
        }
    }
    out.extend(open.map(|(packed, _)| packed));
    for (i, task) in out.iter_mut().enumerate() {
        task.seq = first_seq + i as u64;
    }
    out
}

/// A batch job's tasks and their [`PlanFacts`]: inputs cut at `split_bytes` (chosen from the
/// input size and worker count when None), small ones packed together unless `no_pack`.
pub fn plan_batch(
    files: &[InputFile],
    options: &crate::JobOptions,
    split_bytes: Option<u64>,
    no_pack: bool,
) -> (Vec<NewTask>, PlanFacts) {
    let split = split_bytes.unwrap_or_else(|| {
        let total: u64 = files.iter().map(|f| f.size).sum();
        let workers = match options.workers {
            0 => crate::available_cpus(),
            n => n,
        };
        default_split_bytes(total, workers)
    });
    let mut tasks = plan_tasks(files, options.format, split, 1);
    if !no_pack {
        tasks = pack_tasks(tasks, split);
    }
    let facts = plan_facts(&tasks, split, !no_pack, files.len() as u64);
    (tasks, facts)
}

/// The facts of a batch job's plan that a later `run` of the job checks before it resumes it:
/// the split size and packing it was made with, and a digest of every task (numbers, ranges,
/// formats and the versions of its inputs), so the same inputs give the same digest and any
/// file added, removed or rewritten gives another.
pub fn plan_facts(tasks: &[NewTask], split_bytes: u64, packed: bool, files: u64) -> PlanFacts {
    use sha2::{Digest, Sha256};
    use std::os::unix::ffi::OsStrExt;
    let mut hash = Sha256::new();
    let mut bytes = 0;
    for task in tasks {
        hash.update(task.seq.to_le_bytes());
        hash.update((task.more.len() as u64).to_le_bytes());
        for Piece {
            path,
            start,
            end,
            format,
            version,
        } in task.pieces()
        {
            let path = path.as_os_str().as_bytes();
            hash.update((path.len() as u64).to_le_bytes());
            hash.update(path);
            hash.update(start.to_le_bytes());
            hash.update(end.to_le_bytes());
            hash.update(format.as_str().as_bytes());
            hash.update([0]);
            hash.update(version.as_deref().unwrap_or("").as_bytes());
            hash.update([0]);
            bytes += end - start;
        }
    }
    PlanFacts {
        split_bytes,
        packed,
        tasks: tasks.len() as u64,
        files,
        bytes,
        digest: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redcount_protocol::Format;
    use std::path::PathBuf;

    fn task(seq: u64, bytes: u64) -> NewTask {
        NewTask {
            seq,
            path: PathBuf::from(format!("/f{seq}")),
            start: 0,
            end: bytes,
            format: Format::Text,
            version: None,
            more: Vec::new(),
            due_ms: None,
        }
    }

    #[test]
    fn small_files_are_packed_in_order_and_every_range_is_kept_once() {
        let tasks: Vec<NewTask> = [10, 20, 500, 30, 40, 50, 5]
            .iter()
            .enumerate()
            .map(|(i, &b)| task(i as u64 + 1, b))
            .collect();
        let packed = pack_tasks(tasks.clone(), 100);
        let shape: Vec<(u64, Vec<String>)> = packed
            .iter()
            .map(|t| {
                let mut paths = vec![t.path.display().to_string()];
                paths.extend(t.more.iter().map(|p| p.path.display().to_string()));
                (t.seq, paths)
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (1, vec!["/f3".to_string()]),
                (
                    2,
                    vec!["/f1".into(), "/f2".into(), "/f4".into(), "/f5".into()]
                ),
                (3, vec!["/f6".into(), "/f7".into()]),
            ]
        );
        let bytes = |ts: &[NewTask]| -> u64 {
            ts.iter()
                .map(|t| t.end - t.start + t.more.iter().map(|p| p.end - p.start).sum::<u64>())
                .sum()
        };
        assert_eq!(bytes(&packed), bytes(&tasks));
    }

    #[test]
    fn the_plan_digest_is_the_same_for_the_same_tasks_and_changes_with_any_of_them() {
        let task = |seq: u64, version: Option<&str>| NewTask {
            seq,
            path: "/d/a.txt".into(),
            start: 0,
            end: 10,
            format: redcount_protocol::Format::Text,
            version: version.map(str::to_string),
            more: Vec::new(),
            due_ms: None,
        };
        let one = plan_facts(&[task(1, Some("v1")), task(2, None)], 1 << 20, true, 2);
        let again = plan_facts(&[task(1, Some("v1")), task(2, None)], 1 << 20, true, 2);
        assert_eq!(one, again);
        assert_eq!((one.tasks, one.bytes, one.digest.len()), (2, 20, 64));
        let rewritten = plan_facts(&[task(1, Some("v2")), task(2, None)], 1 << 20, true, 2);
        assert_ne!(one.digest, rewritten.digest);
        let renumbered = plan_facts(&[task(2, Some("v1")), task(3, None)], 1 << 20, true, 2);
        assert_ne!(one.digest, renumbered.digest);
    }
}
