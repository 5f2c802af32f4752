//! Inputs, the first step of the data flow: expand what the user named into files ([`expand`]),
//! cut files into byte-range tasks at whitespace ([`split`]), and, in the worker, read a task's bytes
//! and hand its text to the tokenizer ([`read`], [`csv_text`]). [`Format`] says how a file's bytes
//! become text.

#![warn(missing_docs)]

pub mod csv_text;
pub mod expand;
mod format;
pub mod read;
pub mod split;

pub use format::{Format, FormatChoice};

use std::path::PathBuf;

/// Why an input could not be used. Every variant names the file and says what happened.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
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
