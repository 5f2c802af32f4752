//! The format of a task's bytes: what the count reads them as. Its name travels with every task
//! (`fmt` in the tasks stream), so the protocol, the input planner and the worker share this one type.

/// How a task's bytes are turned into text to count (`fmt` of a task in the tasks stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Count the bytes as they are.
    Text,
    /// RFC 4180 CSV with a header row; count one column.
    Csv,
}

impl Format {
    /// The name stored in the stream.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Csv => "csv",
        }
    }

    /// Inverse of [`Format::as_str`].
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "text" => Some(Format::Text),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}
