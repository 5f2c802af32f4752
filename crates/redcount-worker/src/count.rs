//! Counting one task: read its byte range, pick the text out (CSV column or plain), tokenize, add up.

use std::collections::HashSet;

use anyhow::Context;
use redcount_count::{Tokenizer, WordCounts};
use redcount_input::{csv_text, read::read_range, split::csv_header, InputError};
use redcount_protocol::{Format, JobSpec, Piece};

/// Counts the words of one range of a task into `counts` and returns how many it had. On error `counts` is unchanged.
/// `buf` is reused between tasks to avoid reallocating.
pub(crate) fn count_piece(
    task: &Piece,
    tokenizer: &Tokenizer,
    csv_column: &str,
    buf: &mut Vec<u8>,
    counts: &mut WordCounts,
) -> Result<u64, InputError> {
    read_range(&task.path, task.start, task.end, buf)?;
    let before = counts.total();
    match task.format {
        // Text cannot fail once read: count straight into the batch, no per-task map to merge.
        Format::Text => tokenizer.count(buf, counts),
        // CSV can turn out malformed halfway: count aside and merge only a clean parse. A piece after
        // the first gets the file's header record in front, so columns are found by name.
        Format::Csv => {
            let mut own = WordCounts::new();
            let mut count_fields = |data: &[u8]| {
                csv_text::for_each_field(&task.path, data, csv_column, |field| {
                    tokenizer.count(field, &mut own)
                })
            };
            if task.start == 0 {
                count_fields(buf)?;
            } else {
                let mut with_header =
                    csv_header(&task.path).map_err(|e| InputError::from_io(&task.path, e))?;
                with_header.extend_from_slice(buf);
                count_fields(&with_header)?;
            }
            counts.merge(own);
        }
    }
    Ok(counts.total() - before)
}

/// The tokenizer a job's spec asks for (reads the dictionary file, one word per line or per token).
pub(crate) fn build_tokenizer(spec: &JobSpec) -> anyhow::Result<Tokenizer> {
    let dictionary = match &spec.dictionary {
        None => None,
        Some(path) => {
            let text = std::fs::read(path)
                .with_context(|| format!("cannot read the dictionary {}", path.display()))?;
            let mut words = HashSet::new();
            redcount_count::for_each_token(&text, |w| {
                let mut w = w.to_vec();
                if spec.lowercase {
                    w.make_ascii_lowercase();
                }
                words.insert(w);
            });
            Some(words)
        }
    };
    Ok(Tokenizer::new(spec.tokenizer, spec.lowercase, dictionary))
}
