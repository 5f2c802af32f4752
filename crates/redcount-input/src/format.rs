//! How a file's bytes are turned into text to count: the format of one task ([`Format`]), and the
//! user's choice for a whole job ([`FormatChoice`], `--format`).

use std::path::Path;

pub use redcount_count::Format;

/// Which format the files of a job are read in (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum FormatChoice {
    /// CSV for *.csv, text otherwise.
    #[default]
    Auto,
    /// Every file is text.
    Text,
    /// Every file is CSV.
    Csv,
}

impl FormatChoice {
    /// The format of one file.
    pub fn for_path(self, path: &Path) -> Format {
        match self {
            FormatChoice::Text => Format::Text,
            FormatChoice::Csv => Format::Csv,
            FormatChoice::Auto => {
                // `data.csv.gz` is a CSV file, compressed.
                let plain = match crate::compressed::Compression::of(path) {
                    Some(_) => Path::new(path.file_stem().unwrap_or_default()),
                    None => path,
                };
                let csv = plain
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
                if csv {
                    Format::Csv
                } else {
                    Format::Text
                }
            }
        }
    }
}
