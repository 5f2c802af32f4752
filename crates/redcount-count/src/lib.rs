//! Counting: turn a task's text into words (the tokenizer) and add them up in memory (the counts).
//! Only the aggregated word/count pairs of a batch ever travel to Redis, as compact partial-count
//! blobs ([`partial`]) that workers merge.
//!
//! The kernel is [`Tokenizer::count`]: whitespace found 64 bytes at a time ([`scan`]), each word
//! loaded, lowercased and hashed in registers and counted in a table made for short byte strings
//! ([`WordCounts`]). [`reference`] keeps the plain byte loop and hash map it replaced: the property
//! tests check the two agree on every input, and `redcount bench --kernel` runs them side by side.

#![warn(missing_docs)]

mod format;
pub mod partial;
pub mod reference;
mod scan;
mod table;
mod tokenizer;

pub use format::Format;
pub use table::{Iter, WordCounts};
pub use tokenizer::{for_each_token, is_space, Tokenizer, TokenizerKind};
