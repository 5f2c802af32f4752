//! Counting: turn a task's text into words (the tokenizer) and add them up in memory (the counts).
//! Only the aggregated word/count pairs of a batch ever travel to Redis, as compact partial-count
//! blobs ([`partial`]) that workers merge.

#![warn(missing_docs)]

mod counts;
pub mod partial;
mod tokenizer;

pub use counts::WordCounts;
pub use tokenizer::{for_each_token, is_space, Tokenizer, TokenizerKind};
