//! The reference loop: the scalar byte loop and general hash map that counted words before the
//! kernel of [`crate::Tokenizer`]. Kept as the oracle of the property tests (the kernel must give
//! the same counts on every input) and as the "old loop" of `redcount bench --kernel`.

use std::collections::HashSet;

use hashbrown::HashMap;

use crate::{for_each_token, TokenizerKind};

/// Word -> count, one allocation per distinct word.
pub type ReferenceCounts = HashMap<Vec<u8>, u64>;

/// Counts `text` into `counts` by the rule `kind`/`lowercase`/`dictionary`, one byte at a time,
/// copying each changed word into a scratch buffer (the loop as it was).
pub fn count(
    kind: TokenizerKind,
    lowercase: bool,
    dictionary: Option<&HashSet<Vec<u8>>>,
    text: &[u8],
    counts: &mut ReferenceCounts,
) {
    if kind == TokenizerKind::Whitespace && !lowercase && dictionary.is_none() {
        for_each_token(text, |w| *counts.entry_ref(w).or_insert(0) += 1);
        return;
    }
    let mut scratch = Vec::new();
    for_each_token(text, |token| {
        scratch.clear();
        match kind {
            TokenizerKind::Whitespace => scratch.extend_from_slice(token),
            TokenizerKind::Letters => {
                scratch.extend(token.iter().copied().filter(u8::is_ascii_alphabetic))
            }
        }
        if scratch.is_empty() {
            return;
        }
        if lowercase {
            scratch.make_ascii_lowercase();
        }
        if dictionary.is_some_and(|d| !d.contains(&scratch)) {
            return;
        }
        *counts.entry_ref(&scratch[..]).or_insert(0) += 1;
    });
}
