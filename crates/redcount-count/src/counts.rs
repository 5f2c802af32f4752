//! Word -> count in memory, for one task or a batch of tasks merged before one commit.

use hashbrown::HashMap;

/// Counts of words (raw bytes). Allocates once per distinct word, not per occurrence.
#[derive(Debug, Default, Clone)]
pub struct WordCounts {
    map: HashMap<Vec<u8>, u64>,
    total: u64,
}

impl WordCounts {
    /// An empty map.
    pub fn new() -> WordCounts {
        WordCounts::default()
    }

    /// Adds one occurrence of `word`.
    #[inline]
    pub fn add(&mut self, word: &[u8]) {
        self.total += 1;
        // entry_ref looks up by &[u8] and only copies the word the first time it is seen.
        *self.map.entry_ref(word).or_insert(0) += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: WordCounts) {
        self.total += other.total;
        for (word, n) in other.map {
            *self.map.entry(word).or_insert(0) += n;
        }
    }

    /// Number of words counted (with repetitions).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Every (word, count), in no particular order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], u64)> {
        self.map.iter().map(|(w, n)| (&w[..], *n))
    }

    /// True when no word was counted.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
