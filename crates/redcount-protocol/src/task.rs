//! A task: a byte range of one input file, or (small files packed together at planning) several,
//! as it travels through the `tasks` stream.

use std::path::PathBuf;

pub use redcount_count::Format;

/// One more byte range of a packed task (after the task's own `path`, `start`, `end`, `format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The input file (absolute).
    pub path: PathBuf,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
    /// How its bytes are read.
    pub format: Format,
    /// The version planned (an object's ETag), which every read asks for; None for local files.
    pub version: Option<String>,
}

/// The `more` field of a packed task: `<bytes of the pieces>|` then each piece as
/// `path NUL start NUL end NUL fmt NUL ver NUL` (`ver` empty for a local file; paths and versions
/// hold no NUL byte). Empty for a task of one range.
pub(crate) fn encode_more(more: &[Piece]) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    if more.is_empty() {
        return Vec::new();
    }
    let bytes: u64 = more.iter().map(|p| p.end - p.start).sum();
    let mut out = format!("{bytes}|").into_bytes();
    for p in more {
        out.extend_from_slice(p.path.as_os_str().as_bytes());
        out.push(0);
        out.extend_from_slice(
            format!(
                "{}\0{}\0{}\0{}\0",
                p.start,
                p.end,
                p.format.as_str(),
                p.version.as_deref().unwrap_or("")
            )
            .as_bytes(),
        );
    }
    out
}

/// Inverse of [`encode_more`].
pub(crate) fn decode_more(more: &[u8]) -> Option<Vec<Piece>> {
    use std::os::unix::ffi::OsStringExt;
    if more.is_empty() {
        return Some(Vec::new());
    }
    let bar = more.iter().position(|&b| b == b'|')?;
    let mut fields = more[bar + 1..].split(|&b| b == 0);
    let mut pieces = Vec::new();
    loop {
        let path = match fields.next() {
            Some(p) if !p.is_empty() => p,
            _ => return Some(pieces),
        };
        let num = |f: Option<&[u8]>| std::str::from_utf8(f?).ok()?.parse::<u64>().ok();
        let start = num(fields.next())?;
        let end = num(fields.next())?;
        let format = Format::parse(std::str::from_utf8(fields.next()?).ok()?)?;
        let version = std::str::from_utf8(fields.next()?).ok()?;
        pieces.push(Piece {
            path: PathBuf::from(std::ffi::OsString::from_vec(path.to_vec())),
            start,
            end,
            format,
            version: (!version.is_empty()).then(|| version.to_string()),
        });
    }
}

/// A task the driver is about to enqueue; `seq` becomes its stream id `seq-0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// Its number; its stream id is `seq-0`.
    pub seq: u64,
    /// The input file (absolute).
    pub path: PathBuf,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
    /// How its bytes are read.
    pub format: Format,
    /// The version planned (an object's ETag); None for local files.
    pub version: Option<String>,
    /// More ranges of small files packed into this task (empty for most tasks).
    pub more: Vec<Piece>,
    /// When the file was due to arrive (a stream's schedule, ms on the coordinator's clock); None:
    /// when it was enqueued.
    pub due_ms: Option<u64>,
}

/// A task delivered to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Stream id, `seq-0`.
    pub id: String,
    /// The input file (absolute).
    pub path: PathBuf,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
    /// How its bytes are read.
    pub format: Format,
    /// The version planned (an object's ETag); None for local files.
    pub version: Option<String>,
    /// More ranges packed into this task.
    pub more: Vec<Piece>,
    /// When the task entered the stream (ms, the coordinator's clock).
    pub injected_ms: u64,
    /// 1 on first delivery, +1 on each re-delivery after a lease expired or speculative copy.
    pub attempts: u32,
    /// Handed out alone after its last holder stopped renewing it: count it, then commit it before
    /// taking anything else, so that if it kills this worker too it alone is charged for that.
    pub solo: bool,
    /// Times a holder fell silent while counting it alone. Handed out alone with a charge, a task
    /// of several files or of a range longer than the smallest is split (`Job::split`), not counted.
    pub charged: u32,
}

impl NewTask {
    /// Bytes in all its ranges.
    pub fn bytes(&self) -> u64 {
        self.end - self.start + self.more.iter().map(|p| p.end - p.start).sum::<u64>()
    }

    /// Every range of the task, its own first.
    pub fn pieces(&self) -> impl Iterator<Item = Piece> + '_ {
        std::iter::once(Piece {
            path: self.path.clone(),
            start: self.start,
            end: self.end,
            format: self.format,
            version: self.version.clone(),
        })
        .chain(self.more.iter().cloned())
    }
}

impl Task {
    /// Bytes in all its ranges.
    pub fn len(&self) -> u64 {
        self.end - self.start + self.more.iter().map(|p| p.end - p.start).sum::<u64>()
    }

    /// True when it has no bytes (empty files).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every range of the task, its own first.
    pub fn pieces(&self) -> impl Iterator<Item = Piece> + '_ {
        std::iter::once(Piece {
            path: self.path.clone(),
            start: self.start,
            end: self.end,
            format: self.format,
            version: self.version.clone(),
        })
        .chain(self.more.iter().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_pieces_read_back_as_written() {
        let more = vec![
            Piece {
                path: PathBuf::from("/a b/c|d.txt"),
                start: 0,
                end: 10,
                format: Format::Text,
                version: None,
            },
            Piece {
                path: PathBuf::from("s3://bucket/x.csv"),
                start: 5,
                end: 7,
                format: Format::Csv,
                version: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
            },
        ];
        let wire = encode_more(&more);
        assert!(wire.starts_with(b"12|"));
        assert_eq!(decode_more(&wire), Some(more));
        assert_eq!(decode_more(b""), Some(Vec::new()));
        assert_eq!(decode_more(b"3|/x\0no\0"), None);
        assert_eq!(
            decode_more(b"3|/x\0 0\0 3\0text\0"),
            None,
            "a piece without its version"
        );
    }
}
