//! Inputs, the first step of the data flow: expand what the user named into files ([`expand`]),
//! cut files into byte-range tasks at whitespace ([`split`]), and, in the worker, read a task's bytes
//! and hand its text to the tokenizer ([`read`], [`csv_text`]). [`Format`] says how a file's bytes
//! become text.

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
    #[error("{path}: no such file or directory")]
    Missing { path: PathBuf },
    #[error("{pattern}: the pattern matched no files")]
    NoMatch { pattern: String },
    #[error("{pattern}: invalid glob pattern: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: file changed while the job ran: it has {size} bytes, the task needs bytes {start}..{end}")]
    Changed {
        path: PathBuf,
        size: u64,
        start: u64,
        end: u64,
    },
    #[error("{path}: malformed CSV: {reason}")]
    MalformedCsv { path: PathBuf, reason: String },
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
