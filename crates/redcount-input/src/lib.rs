//! Inputs, the first step of the data flow: expand what the user named into files and objects
//! ([`expand`], [`InputFile`]), cut them into byte-range tasks at whitespace ([`split`]), and, in the
//! worker, read a task's bytes and hand its text to the tokenizer ([`read`], [`csv_text`]). Local
//! files and objects in an S3-compatible store ([`object`]) are read the same way. [`Format`] says
//! how an input's bytes become text.

#![warn(missing_docs)]

pub mod compressed;
pub mod csv_text;
pub mod expand;
mod format;
pub mod object;
pub mod read;
pub mod split;

pub use format::{Format, FormatChoice};

use std::path::PathBuf;

/// One input as planning sees it: where its bytes are, how many, and which version was planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// An absolute local path, or an object's `s3://BUCKET/KEY`.
    pub path: PathBuf,
    /// Its length when it was listed (0 for a file that could not be stat'ed: its worker says why).
    pub size: u64,
    /// The version planned: an object's ETag (every read asks for exactly it), a local file's
    /// size, modification time and inode (`read::local_version`: every read checks them).
    pub version: Option<String>,
}

/// Why an input could not be used. Every variant names the file and says what happened.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// An input that looks binary, skipped by the job's `--binary skip`.
    #[error("{path}: looks binary (a NUL byte in its first 8 KiB): not counted; run with `--binary count` to count it")]
    Binary {
        /// The file.
        path: PathBuf,
    },
    /// The path names nothing.
    #[error("{path}: no such file or directory")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// A glob pattern matched no file.
    #[error("{pattern}: the pattern matched no files")]
    NoMatch {
        /// The pattern.
        pattern: String,
    },
    /// An object-store URL under which the bucket holds no object.
    #[error("{url}: {detail}")]
    NoObjects {
        /// The URL as given.
        url: String,
        /// Which bucket is empty, or under which prefix, and what to check.
        detail: String,
    },
    /// A glob pattern cannot be parsed.
    #[error("{pattern}: invalid glob pattern: {reason}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file exists but cannot be read.
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// The file no longer has the bytes a task needs.
    #[error("{path}: file changed while the job ran: it has {size} bytes, the task needs bytes {start}..{end}")]
    Changed {
        /// The file.
        path: PathBuf,
        /// Its size now.
        size: u64,
        /// First byte of the task's range.
        start: u64,
        /// One past the last byte of the range.
        end: u64,
    },
    /// A local file that is no longer the one planned (rewritten or replaced): counting it now
    /// would mix two versions.
    #[error(
        "{path}: file changed while the job ran ({detail}); counting it now would mix two versions"
    )]
    Replaced {
        /// The file.
        path: PathBuf,
        /// What changed.
        detail: String,
    },
    /// A run of bytes without whitespace longer than [`read::MAX_WORD`]: not text.
    #[error(
        "{path}: a word of more than 64 MiB starts at byte {at}; redcount keeps every word in \
             Redis, whose strings stop at 512 MB: is this input text?"
    )]
    WordTooLong {
        /// The input.
        path: PathBuf,
        /// Where the word begins.
        at: u64,
    },
    /// An object that is not in the store (any more).
    #[error("{path}: no such object (was it deleted after the job was planned?)")]
    ObjectMissing {
        /// The object's URL.
        path: PathBuf,
    },
    /// An object replaced since the job was planned: counting it now would mix two versions.
    #[error("{path}: object changed while the job ran: it is no longer version {version}")]
    ObjectChanged {
        /// The object's URL.
        path: PathBuf,
        /// The ETag planned.
        version: String,
    },
    /// The object store refused a listing or a read (after retrying what was transient).
    #[error("{path}: object store: {reason}")]
    ObjectStore {
        /// The object's or prefix's URL.
        path: PathBuf,
        /// What the store or the client said.
        reason: String,
    },
    /// A CSV file that cannot be parsed.
    #[error("{path}: malformed CSV: {reason}")]
    MalformedCsv {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
}

impl InputError {
    /// Reads an I/O error on `path` as "missing" or "unreadable".
    pub fn from_io(path: &std::path::Path, source: std::io::Error) -> InputError {
        if source.kind() == std::io::ErrorKind::NotFound {
            InputError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            InputError::Unreadable {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}
