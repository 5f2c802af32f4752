//! The batch planner, streamed: inputs go in one at a time as the listing finds them, and tasks
//! come out as soon as they are whole (a large input's ranges at once, small inputs when the task
//! they are packed into is full), numbered in order, with the plan's digest kept as they go. It
//! holds nothing of the inputs but the task being packed, so a driver that enqueues what comes out
//! plans five million files in the memory of one.

use redcount_input::split::split_file;
use redcount_input::{FormatChoice, InputError, InputFile};
use redcount_protocol::{NewTask, Piece, PlanFacts};
use sha2::{Digest, Sha256};

/// Most files packed into one task: keeps every call that carries a task's ranges small.
pub const MAX_PIECES: usize = 2000;

/// Turns inputs into numbered tasks: each input cut at `split_bytes` (at whitespace in text,
/// between records in CSV), and, when packing, ranges smaller than that packed together in order
/// into tasks of up to `split_bytes` and [`MAX_PIECES`] ranges (as Hadoop's
/// CombineFileInputFormat does), so Redis's bookkeeping is paid per task of about `split_bytes`,
/// not per small file; larger ranges stay alone.
pub struct Planner {
    format: FormatChoice,
    split_bytes: u64,
    pack: bool,
    next_seq: u64,
    /// The packed task being filled, and its bytes so far.
    open: Option<(NewTask, u64)>,
    digest: Sha256,
    files: u64,
    tasks: u64,
    bytes: u64,
}

impl Planner {
    /// A planner whose first task is number 1.
    pub fn new(format: FormatChoice, split_bytes: u64, pack: bool) -> Planner {
        Planner {
            format,
            split_bytes,
            pack,
            next_seq: 1,
            open: None,
            digest: Sha256::new(),
            files: 0,
            tasks: 0,
            bytes: 0,
        }
    }

    /// Plans one input: the tasks it completes are appended to `out`, in order.
    pub fn push(&mut self, file: &InputFile, out: &mut Vec<NewTask>) {
        self.files += 1;
        let format = self.format.for_path(&file.path);
        // An input we cannot open for splitting stays one task; the worker reports the error.
        let ranges = split_file(file, format, self.split_bytes)
            .unwrap_or_else(|_: InputError| vec![(0, file.size)]);
        for (start, end) in ranges {
            let task = NewTask {
                seq: 0,
                path: file.path.clone(),
                start,
                end,
                format,
                version: file.version.clone(),
                more: Vec::new(),
                due_ms: None,
            };
            let bytes = end - start;
            if !self.pack || bytes >= self.split_bytes {
                self.emit(task, out);
                continue;
            }
            match &mut self.open {
                Some((packed, total))
                    if *total + bytes <= self.split_bytes && packed.more.len() + 1 < MAX_PIECES =>
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
                    if let Some((full, _)) = self.open.take() {
                        self.emit(full, out);
                    }
                    self.open = Some((task, bytes));
                }
            }
        }
    }

    /// Ends the plan: the task being packed is appended to `out`; returns the plan's facts.
    pub fn finish(mut self, out: &mut Vec<NewTask>) -> PlanFacts {
        if let Some((last, _)) = self.open.take() {
            self.emit(last, out);
        }
        PlanFacts {
            split_bytes: self.split_bytes,
            packed: self.pack,
            tasks: self.tasks,
            files: self.files,
            bytes: self.bytes,
            digest: self
                .digest
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }

    /// Numbers a whole task, adds it to the digest (its number, and the path, range, format and
    /// version of each of its ranges) and hands it out.
    fn emit(&mut self, mut task: NewTask, out: &mut Vec<NewTask>) {
        use std::os::unix::ffi::OsStrExt;
        task.seq = self.next_seq;
        self.next_seq += 1;
        self.tasks += 1;
        self.digest.update(task.seq.to_le_bytes());
        self.digest.update((task.more.len() as u64).to_le_bytes());
        for piece in task.pieces() {
            let path = piece.path.as_os_str().as_bytes();
            self.digest.update((path.len() as u64).to_le_bytes());
            self.digest.update(path);
            self.digest.update(piece.start.to_le_bytes());
            self.digest.update(piece.end.to_le_bytes());
            self.digest.update(piece.format.as_str().as_bytes());
            self.digest.update([0]);
            self.digest
                .update(piece.version.as_deref().unwrap_or("").as_bytes());
            self.digest.update([0]);
            self.bytes += piece.end - piece.start;
        }
        out.push(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(name: &str, size: u64, version: Option<&str>) -> InputFile {
        InputFile {
            path: PathBuf::from(format!("/nonexistent/{name}")),
            size,
            version: version.map(str::to_string),
        }
    }

    fn plan(files: &[InputFile], split: u64, pack: bool) -> (Vec<NewTask>, PlanFacts) {
        let mut planner = Planner::new(FormatChoice::Auto, split, pack);
        let mut tasks = Vec::new();
        for f in files {
            planner.push(f, &mut tasks);
        }
        let facts = planner.finish(&mut tasks);
        (tasks, facts)
    }

    #[test]
    fn small_inputs_are_packed_in_order_and_large_ones_stay_alone() {
        let files = [
            file("a", 30, None),
            file("b", 50, None),
            file("big", 150, None),
            file("c", 40, None),
            file("d", 10, None),
        ];
        // "big" cannot be opened to split: it stays one task of its own.
        let (tasks, facts) = plan(&files, 100, true);
        let shape: Vec<(u64, Vec<String>)> = tasks
            .iter()
            .map(|t| {
                let names = t
                    .pieces()
                    .map(|p| p.path.file_name().unwrap().to_string_lossy().into_owned())
                    .collect();
                (t.seq, names)
            })
            .collect();
        assert_eq!(
            shape,
            [
                (1, vec!["big".to_string()]),
                (2, vec!["a".into(), "b".into()]),
                (3, vec!["c".into(), "d".into()]),
            ]
        );
        assert_eq!((facts.tasks, facts.files, facts.bytes), (3, 5, 280));
        let (unpacked, _) = plan(&files, 100, false);
        assert_eq!(unpacked.len(), 5);
    }

    #[test]
    fn the_digest_is_the_same_for_the_same_inputs_and_changes_with_any_of_them() {
        let files = [file("a", 30, Some("v1")), file("b", 50, None)];
        let (_, one) = plan(&files, 100, true);
        let (_, again) = plan(&files, 100, true);
        assert_eq!(one, again);
        assert_eq!(one.digest.len(), 64);
        let rewritten = [file("a", 30, Some("v2")), file("b", 50, None)];
        assert_ne!(one.digest, plan(&rewritten, 100, true).1.digest);
        assert_ne!(one.digest, plan(&files, 100, false).1.digest);
        assert_ne!(one.digest, plan(&files[..1], 100, true).1.digest);
    }

    #[test]
    fn a_packed_task_holds_at_most_max_pieces_ranges() {
        let files: Vec<InputFile> = (0..2 * MAX_PIECES + 1)
            .map(|i| file(&format!("f{i}"), 1, None))
            .collect();
        let (tasks, _) = plan(&files, 1 << 30, true);
        let sizes: Vec<usize> = tasks.iter().map(|t| 1 + t.more.len()).collect();
        assert_eq!(sizes, [MAX_PIECES, MAX_PIECES, 1]);
    }
}
