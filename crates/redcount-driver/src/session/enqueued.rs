//! What the driver remembers of the tasks it enqueued, so it can send any of them again after a
//! rollback: a batch job's tasks in a temporary file (a few bytes of memory per 256 tasks, however
//! many inputs), or a stream's schedule, from which the task of any seq is rebuilt (bounded however
//! long the stream runs).

use std::io::{BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use redcount_protocol::{Format, NewTask, Piece};

/// A stream's injection schedule: batch k (0, 1, ...) holds seqs `k * per_batch + 1 ..`, is due at
/// `due_zero_ms + k * interval`, and seq s is the catalogue's file `(s - 1) % len`.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The files injected, in order, cycled through (each with seq 0 and no due time).
    pub catalogue: Vec<NewTask>,
    /// Files per batch.
    pub per_batch: u64,
    /// Time between batches.
    pub interval: Duration,
    /// When batch 0 was due (ms, the coordinator's clock).
    pub due_zero_ms: u64,
}

impl Schedule {
    /// The task of seq `seq` (from 1).
    pub fn task(&self, seq: u64) -> NewTask {
        let index = seq.saturating_sub(1);
        let file = &self.catalogue[(index % self.catalogue.len().max(1) as u64) as usize];
        let batch = u32::try_from(index / self.per_batch.max(1)).unwrap_or(u32::MAX);
        NewTask {
            seq,
            due_ms: Some(self.due_zero_ms + (self.interval * batch).as_millis() as u64),
            ..file.clone()
        }
    }
}

/// Every task enqueued so far (seqs `first..first + len`, without holes).
pub(super) enum EnqueuedTasks {
    /// A batch job's tasks, spilled to disk as they are enqueued.
    Spilled(TaskSpill),
    /// A stream's first `count` tasks of its schedule.
    Schedule { schedule: Schedule, count: u64 },
}

impl EnqueuedTasks {
    /// Tasks enqueued.
    pub(super) fn len(&self) -> usize {
        match self {
            EnqueuedTasks::Spilled(spill) => spill.len,
            EnqueuedTasks::Schedule { count, .. } => *count as usize,
        }
    }

    /// The seq of the first task.
    pub(super) fn first_seq(&self) -> u64 {
        match self {
            EnqueuedTasks::Spilled(spill) => spill.first_seq.unwrap_or(1),
            EnqueuedTasks::Schedule { .. } => 1,
        }
    }

    /// Tasks `from..to` (indexes, not seqs).
    pub(super) fn range(&mut self, from: usize, to: usize) -> anyhow::Result<Vec<NewTask>> {
        match self {
            EnqueuedTasks::Spilled(spill) => spill.range(from, to),
            EnqueuedTasks::Schedule { schedule, .. } => {
                Ok((from..to).map(|i| schedule.task(i as u64 + 1)).collect())
            }
        }
    }
}

/// Tasks kept one after another in an unnamed temporary file, with the offset of every
/// [`SPILL_STRIDE`]-th: sending them again from any one reads the file from the stride before it.
pub(super) struct TaskSpill {
    file: BufWriter<std::fs::File>,
    /// Offset of task `k * SPILL_STRIDE`.
    offsets: Vec<u64>,
    /// Bytes written.
    written: u64,
    /// Tasks written.
    len: usize,
    first_seq: Option<u64>,
}

/// Tasks between two remembered offsets of a [`TaskSpill`].
const SPILL_STRIDE: usize = 256;

impl TaskSpill {
    /// An empty spill in the temporary directory (deleted as soon as it is made: the open file is
    /// all there is of it, gone with the process).
    pub(super) fn new() -> anyhow::Result<TaskSpill> {
        let file = tempfile::tempfile()
            .context("cannot create a temporary file for the job's tasks (is TMPDIR writable?)")?;
        Ok(TaskSpill {
            file: BufWriter::with_capacity(1 << 20, file),
            offsets: Vec::new(),
            written: 0,
            len: 0,
            first_seq: None,
        })
    }

    /// Appends tasks (seqs continuing the ones written).
    pub(super) fn push(&mut self, tasks: &[NewTask]) -> anyhow::Result<()> {
        let mut buf = Vec::new();
        for task in tasks {
            if self.len.is_multiple_of(SPILL_STRIDE) {
                self.offsets.push(self.written);
            }
            self.first_seq.get_or_insert(task.seq);
            buf.clear();
            encode(task, &mut buf);
            self.file
                .write_all(&buf)
                .context("cannot write the job's tasks to a temporary file (is TMPDIR full?)")?;
            self.written += buf.len() as u64;
            self.len += 1;
        }
        Ok(())
    }

    /// Tasks `from..to` (indexes), read back.
    fn range(&mut self, from: usize, to: usize) -> anyhow::Result<Vec<NewTask>> {
        self.file.flush().context("writing the job's tasks")?;
        let stride = from / SPILL_STRIDE;
        let mut reader = std::io::BufReader::with_capacity(
            1 << 16,
            At {
                file: self.file.get_ref(),
                at: self.offsets.get(stride).copied().unwrap_or(self.written),
            },
        );
        let mut out = Vec::with_capacity(to.saturating_sub(from));
        for i in stride * SPILL_STRIDE..to.min(self.len) {
            let task = decode(&mut reader).context("reading the job's tasks back")?;
            if i >= from {
                out.push(task);
            }
        }
        Ok(out)
    }
}

/// A file read from an offset on, without moving the file's own position.
struct At<'a> {
    file: &'a std::fs::File,
    at: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// A task as bytes: seq, due (or none), then each range: path, start, end, format, version.
fn encode(task: &NewTask, out: &mut Vec<u8>) {
    let bytes = |out: &mut Vec<u8>, b: Option<&[u8]>| match b {
        Some(b) => {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
    };
    out.extend_from_slice(&task.seq.to_le_bytes());
    out.extend_from_slice(&task.due_ms.unwrap_or(u64::MAX).to_le_bytes());
    out.extend_from_slice(&(1 + task.more.len() as u32).to_le_bytes());
    for p in task.pieces() {
        bytes(out, Some(p.path.as_os_str().as_bytes()));
        out.extend_from_slice(&p.start.to_le_bytes());
        out.extend_from_slice(&p.end.to_le_bytes());
        out.push(match p.format {
            Format::Text => 0,
            Format::Csv => 1,
        });
        bytes(out, p.version.as_deref().map(str::as_bytes));
    }
}

/// The task [`encode`] wrote.
fn decode(r: &mut impl Read) -> std::io::Result<NewTask> {
    fn u64_of(r: &mut impl Read) -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn u32_of(r: &mut impl Read) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn bytes_of(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
        let len = u32_of(r)?;
        if len == u32::MAX {
            return Ok(None);
        }
        let mut b = vec![0u8; len as usize];
        r.read_exact(&mut b)?;
        Ok(Some(b))
    }
    let seq = u64_of(r)?;
    let due = u64_of(r)?;
    let pieces = u32_of(r)?;
    let mut all = Vec::with_capacity(pieces as usize);
    for _ in 0..pieces {
        let path = PathBuf::from(std::ffi::OsString::from_vec(
            bytes_of(r)?.unwrap_or_default(),
        ));
        let start = u64_of(r)?;
        let end = u64_of(r)?;
        let mut f = [0u8; 1];
        r.read_exact(&mut f)?;
        let format = if f[0] == 1 { Format::Csv } else { Format::Text };
        let version = bytes_of(r)?.map(|v| String::from_utf8_lossy(&v).into_owned());
        all.push(Piece {
            path,
            start,
            end,
            format,
            version,
        });
    }
    let mut all = all.into_iter();
    let first = all
        .next()
        .ok_or_else(|| std::io::Error::other("a spilled task without a range"))?;
    Ok(NewTask {
        seq,
        path: first.path,
        start: first.start,
        end: first.end,
        format: first.format,
        version: first.version,
        more: all.collect(),
        due_ms: (due != u64::MAX).then_some(due),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redcount_protocol::Format;
    use std::path::PathBuf;

    fn file(name: &str) -> NewTask {
        NewTask {
            seq: 0,
            path: PathBuf::from(name),
            start: 0,
            end: 10,
            format: Format::Text,
            version: None,
            more: Vec::new(),
            due_ms: None,
        }
    }

    #[test]
    fn a_schedule_rebuilds_every_task_as_it_was_injected() {
        let schedule = Schedule {
            catalogue: vec![file("a"), file("b"), file("c")],
            per_batch: 2,
            interval: Duration::from_millis(250),
            due_zero_ms: 1_000,
        };
        let got: Vec<(u64, String, Option<u64>)> = (1..=7)
            .map(|s| schedule.task(s))
            .map(|t| (t.seq, t.path.display().to_string(), t.due_ms))
            .collect();
        let want = [
            (1, "a", 1_000),
            (2, "b", 1_000),
            (3, "c", 1_250),
            (4, "a", 1_250),
            (5, "b", 1_500),
            (6, "c", 1_500),
            (7, "a", 1_750),
        ];
        let want: Vec<(u64, String, Option<u64>)> = want
            .iter()
            .map(|(s, p, d)| (*s, p.to_string(), Some(*d)))
            .collect();
        assert_eq!(got, want);
        let mut enqueued = EnqueuedTasks::Schedule { schedule, count: 7 };
        assert_eq!(enqueued.len(), 7);
        assert_eq!(
            enqueued.range(2, 4).expect("tasks")[1].path,
            PathBuf::from("a")
        );
    }

    #[test]
    fn spilled_tasks_read_back_as_written_from_any_index() {
        let mut spill = TaskSpill::new().expect("spill");
        let tasks: Vec<NewTask> = (1..=1000u64)
            .map(|seq| NewTask {
                seq,
                path: PathBuf::from(std::ffi::OsString::from_vec(vec![
                    b'/', b'x', 0xff, seq as u8,
                ])),
                start: seq,
                end: seq * 3,
                format: if seq % 3 == 0 {
                    Format::Csv
                } else {
                    Format::Text
                },
                version: (seq % 2 == 0).then(|| format!("v{seq}")),
                more: (0..seq % 4)
                    .map(|k| Piece {
                        path: PathBuf::from(format!("/m/{k}")),
                        start: k,
                        end: k + 1,
                        format: Format::Text,
                        version: None,
                    })
                    .collect(),
                due_ms: (seq % 5 == 0).then_some(seq * 10),
            })
            .collect();
        spill.push(&tasks[..300]).expect("push");
        assert_eq!(spill.range(0, 300).expect("read"), tasks[..300]);
        spill.push(&tasks[300..]).expect("push");
        let mut enqueued = EnqueuedTasks::Spilled(spill);
        assert_eq!((enqueued.len(), enqueued.first_seq()), (1000, 1));
        for (from, to) in [(0, 1), (255, 257), (511, 1000), (999, 1000), (700, 700)] {
            assert_eq!(enqueued.range(from, to).expect("read"), tasks[from..to]);
        }
    }
}
