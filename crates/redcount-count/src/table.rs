//! Word -> count in memory, for one task or a batch of tasks merged before one commit: an open-
//! addressing table made for short byte strings, the shape of words.
//!
//! Why not a general hash map of `Vec<u8>`: that costs an allocation per distinct word, a pointer to
//! follow on every comparison and a hash over the bytes the tokenizer has just read. Here a slot is
//! 32 bytes, a word of up to 16 bytes is stored in the slot itself (zero-padded, so one 16-byte
//! compare and its length decide equality), a longer one in an arena that is one allocation per
//! table, and the tokenizer hands in the word already loaded as two little-endian `u64`s with its
//! hash, so nothing is read twice. The table is cleared and kept between batches (up to
//! [`KEPT_SLOTS`]), so a worker does not allocate per task either.

use crate::partial;

/// A word of at most this many bytes lives inside its slot.
pub(crate) const INLINE: usize = 16;

/// Slots a cleared table keeps allocated (32 bytes each: 128 MiB, what a batch of 16 MiB of
/// distinct ids fills); a larger one is given back.
const KEPT_SLOTS: usize = 1 << 22;

/// Slots of a new table.
const FIRST_SLOTS: usize = 1 << 12;

/// One slot. `len == 0` is an empty slot (words are never empty).
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Slot {
    /// A short word: its bytes, zero-padded. A long one: its first 8 bytes, then its arena offset.
    head: [u8; INLINE],
    count: u64,
    len: u32,
    /// The low 32 bits of the word's hash (checked before a long word's arena bytes).
    tag: u32,
}

impl Slot {
    #[inline]
    fn lo(&self) -> u64 {
        u64::from_le_bytes(self.head[..8].try_into().unwrap_or_default())
    }
    #[inline]
    fn hi(&self) -> u64 {
        u64::from_le_bytes(self.head[8..].try_into().unwrap_or_default())
    }
}

/// `n` empty slots. A table of millions of words is probed at random: with 4 KiB pages nearly
/// every probe also misses the TLB, so a large table asks for huge pages (Linux's transparent huge
/// pages in `madvise` mode, the default) before its memory is first touched.
fn new_slots(n: usize) -> Vec<Slot> {
    let mut slots: Vec<Slot> = Vec::with_capacity(n);
    #[cfg(target_os = "linux")]
    if n * std::mem::size_of::<Slot>() >= 4 << 20 {
        const HUGE: usize = 2 << 20;
        let start = slots.as_mut_ptr() as usize;
        let end = start + n * std::mem::size_of::<Slot>();
        let (from, to) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if let Some(ptr) = std::ptr::NonNull::new(from as *mut std::ffi::c_void) {
            if to > from {
                // SAFETY: [from, to) lies inside the allocation `slots` owns, page-aligned;
                // MADV_HUGEPAGE changes only how its pages are backed, never their contents.
                // Failure (no THP in this kernel) is harmless: the pages stay small.
                let _ = unsafe {
                    nix::sys::mman::madvise(
                        ptr,
                        to - from,
                        nix::sys::mman::MmapAdvise::MADV_HUGEPAGE,
                    )
                };
            }
        }
    }
    slots.resize(n, Slot::default());
    slots
}

/// A word loaded for lookup: up to 16 bytes as two zero-padded little-endian words, and its hash.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    pub(crate) len: usize,
    pub(crate) hash: u64,
}

impl Head {
    /// A short word (at most [`INLINE`] bytes) given as its padded halves.
    #[inline(always)]
    pub(crate) fn short(lo: u64, hi: u64, len: usize) -> Head {
        Head {
            lo,
            hi,
            len,
            hash: hash_short(lo, hi, len),
        }
    }

    /// Any word, from its bytes: short ones as [`Head::short`], long ones hashed whole.
    #[inline]
    pub(crate) fn of(word: &[u8]) -> Head {
        if word.len() <= INLINE {
            let mut b = [0u8; INLINE];
            b[..word.len()].copy_from_slice(word);
            let (lo, hi) = halves(&b);
            Head::short(lo, hi, word.len())
        } else {
            let (lo, _) = halves(word[..INLINE].try_into().unwrap_or(&[0; INLINE]));
            Head {
                lo,
                hi: 0,
                len: word.len(),
                hash: hash_long(word),
            }
        }
    }
}

/// The two little-endian halves of 16 bytes.
#[inline(always)]
pub(crate) fn halves(b: &[u8; INLINE]) -> (u64, u64) {
    let (l, h) = b.split_at(8);
    (
        u64::from_le_bytes(l.try_into().unwrap_or_default()),
        u64::from_le_bytes(h.try_into().unwrap_or_default()),
    )
}

const SEED: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// The folded multiply of foldhash and wyhash: the 128-bit product's halves xored together.
#[inline(always)]
fn fold(x: u64, y: u64) -> u64 {
    let p = u128::from(x) * u128::from(y);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Hash of a word of at most 16 bytes given as its padded halves (the table's own hash: it never
/// leaves the process; partitions use [`partial::partition_of`]).
#[inline(always)]
fn hash_short(lo: u64, hi: u64, len: usize) -> u64 {
    fold(fold(lo ^ SEED[0], hi ^ SEED[1]) ^ len as u64, SEED[2])
}

/// Hash of a word longer than 16 bytes.
fn hash_long(word: &[u8]) -> u64 {
    let mut acc = SEED[3] ^ word.len() as u64;
    let mut chunks = word.chunks_exact(INLINE);
    for c in &mut chunks {
        let (lo, hi) = halves(c.try_into().unwrap_or(&[0; INLINE]));
        acc = fold(lo ^ acc ^ SEED[0], hi ^ SEED[1]);
    }
    // The last 16 bytes, overlapping the chunks before (the word is longer than 16).
    let tail = &word[word.len() - INLINE..];
    let (lo, hi) = halves(tail.try_into().unwrap_or(&[0; INLINE]));
    fold(fold(lo ^ acc ^ SEED[0], hi ^ SEED[1]), SEED[2])
}

/// Counts of words (raw bytes).
#[derive(Clone)]
pub struct WordCounts {
    slots: Vec<Slot>,
    /// Occupied slots.
    used: usize,
    /// Slots with a count above zero (differs from `used` in a closed table).
    live: usize,
    /// Bytes of the words longer than [`INLINE`].
    arena: Vec<u8>,
    total: u64,
    /// A closed table counts only the words it was made with ([`WordCounts::only`]).
    closed: bool,
}

impl Default for WordCounts {
    fn default() -> Self {
        WordCounts::new()
    }
}

impl std::fmt::Debug for WordCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordCounts")
            .field("distinct", &self.live)
            .field("total", &self.total)
            .field("closed", &self.closed)
            .finish()
    }
}

impl WordCounts {
    /// An empty table.
    pub fn new() -> WordCounts {
        WordCounts {
            slots: new_slots(FIRST_SLOTS),
            used: 0,
            live: 0,
            arena: Vec::new(),
            total: 0,
            closed: false,
        }
    }

    /// A closed table: it counts only `words` (a `--dictionary`) and ignores every other word, in
    /// the one lookup a word costs anyway.
    pub fn only<'a>(words: impl IntoIterator<Item = &'a [u8]>) -> WordCounts {
        let mut t = WordCounts::new();
        for w in words {
            let h = Head::of(w);
            t.find_or_insert(&h, w, 0);
        }
        // Most lookups in a closed table may be misses (words not in the dictionary), and a miss
        // probes until an empty slot: kept at most a quarter full, that is one or two probes.
        while t.used * 4 > t.slots.len() {
            t.grow();
        }
        t.closed = true;
        t
    }

    /// True for a table made by [`WordCounts::only`].
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Forgets every count and keeps the memory (up to 128 MiB of slots) for the next batch. A closed
    /// table keeps its words, at zero.
    pub fn clear(&mut self) {
        self.total = 0;
        self.live = 0;
        if self.closed {
            self.slots.iter_mut().for_each(|s| s.count = 0);
            return;
        }
        self.used = 0;
        self.arena.clear();
        if self.slots.len() > KEPT_SLOTS {
            self.slots = new_slots(KEPT_SLOTS);
            self.arena.shrink_to(1 << 20);
        } else {
            self.slots.fill(Slot::default());
        }
    }

    /// Adds one occurrence of `word`.
    #[inline]
    pub fn add(&mut self, word: &[u8]) {
        let h = Head::of(word);
        self.add_head(&h, word, 1);
    }

    /// Adds `n` occurrences of `word` (counted with hash and halves `h`, see [`Head::of`]).
    #[inline(always)]
    pub(crate) fn add_head(&mut self, h: &Head, word: &[u8], n: u64) {
        self.total += n;
        self.find_or_insert(h, word, n);
    }

    /// True once the slots outgrow a core's L2 cache (64 Ki slots, 2 MiB): lookups miss the
    /// caches from there on, and are worth prefetching.
    #[inline(always)]
    pub(crate) fn is_large(&self) -> bool {
        self.slots.len() >= 1 << 16
    }

    /// Hints the CPU to load the slot where `hash` is looked up first (the tokenizer does this a few
    /// words ahead: on a table larger than the caches the probe is a cache miss otherwise).
    #[inline(always)]
    pub(crate) fn prefetch(&self, hash: u64) {
        let i = self.index(hash);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `i` is masked to the slot count, so the pointer is inside `slots`; a prefetch
        // never faults and changes no state anyway.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(self.slots.as_ptr().add(i) as *const i8);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    #[inline(always)]
    fn index(&self, hash: u64) -> usize {
        (hash >> 32) as usize & (self.slots.len() - 1)
    }

    /// Whether `word` is in the table (a closed table's dictionary words, even at count zero).
    pub fn contains(&self, word: &[u8]) -> bool {
        let h = Head::of(word);
        self.find(&h, word).is_some()
    }

    fn find(&self, h: &Head, word: &[u8]) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.index(h.hash);
        loop {
            let s = &self.slots[i];
            if s.len == 0 {
                return None;
            }
            if self.matches(s, h, word) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    #[inline(always)]
    fn matches(&self, s: &Slot, h: &Head, word: &[u8]) -> bool {
        if s.len as usize != h.len {
            return false;
        }
        if h.len <= INLINE {
            s.lo() == h.lo && s.hi() == h.hi
        } else {
            s.tag == h.hash as u32 && s.lo() == h.lo && self.long_word(s) == word
        }
    }

    /// The bytes of a word stored in the arena.
    #[inline]
    fn long_word(&self, s: &Slot) -> &[u8] {
        let off = s.hi() as usize;
        &self.arena[off..off + s.len as usize]
    }

    /// The hot loop of counting: find the word's slot (adding `n`) or take the first empty one.
    #[inline(always)]
    fn find_or_insert(&mut self, h: &Head, word: &[u8], n: u64) {
        let mask = self.slots.len() - 1;
        let mut i = self.index(h.hash);
        loop {
            let s = self.slots[i];
            if s.len == 0 {
                break;
            }
            if self.matches(&s, h, word) {
                let slot = &mut self.slots[i];
                if slot.count == 0 && n > 0 {
                    self.live += 1;
                }
                slot.count += n;
                return;
            }
            i = (i + 1) & mask;
        }
        if self.closed {
            // Not a dictionary word: not counted.
            self.total -= n;
            return;
        }
        self.insert_at(i, h, word, n);
    }

    #[cold]
    #[inline(never)]
    fn insert_at(&mut self, i: usize, h: &Head, word: &[u8], n: u64) {
        let mut slot = Slot {
            head: [0; INLINE],
            count: n,
            len: h.len as u32,
            tag: h.hash as u32,
        };
        if h.len <= INLINE {
            slot.head[..8].copy_from_slice(&h.lo.to_le_bytes());
            slot.head[8..].copy_from_slice(&h.hi.to_le_bytes());
        } else {
            slot.head[..8].copy_from_slice(&h.lo.to_le_bytes());
            slot.head[8..].copy_from_slice(&(self.arena.len() as u64).to_le_bytes());
            self.arena.extend_from_slice(word);
        }
        self.slots[i] = slot;
        self.used += 1;
        if n > 0 {
            self.live += 1;
        }
        // Load at most 0.7: linear probing stays short.
        if self.used * 10 > self.slots.len() * 7 {
            self.grow();
        }
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        self.slots = new_slots(old.len() * 2);
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|s| s.len != 0) {
            let hash = if s.len as usize <= INLINE {
                hash_short(s.lo(), s.hi(), s.len as usize)
            } else {
                hash_long(self.long_word(&s))
            };
            let mut i = self.index(hash);
            while self.slots[i].len != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &WordCounts) {
        for (w, n) in other.iter() {
            let h = Head::of(w);
            self.add_head(&h, w, n);
        }
    }

    /// Number of words counted (with repetitions).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of distinct words counted.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no word was counted.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Every (word, count) with a count above zero, in no particular order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            table: self,
            slots: self.slots.iter(),
            left: self.live,
        }
    }

    #[inline]
    fn word<'a>(&'a self, s: &'a Slot) -> &'a [u8] {
        if s.len as usize <= INLINE {
            &s.head[..s.len as usize]
        } else {
            self.long_word(s)
        }
    }

    /// What a commit stores: one blob per partition that has words, `(partition, blob)`, each
    /// sorted by word (the same bytes as [`partial::partition_blobs`] of [`WordCounts::iter`]).
    ///
    /// Each word becomes a 24-byte entry holding its first 8 bytes as a big-endian number, its
    /// count, length and slot. Entries are sorted by that number with a radix sort, then only runs
    /// of equal numbers by their whole bytes; a word of up to 8 bytes is written from its entry, so
    /// the table (larger than the caches for millions of distinct words) is read only in order,
    /// once: a comparison sort chasing slots costs more than counting the words did.
    pub fn partition_blobs(&self, partitions: u32) -> Vec<(u32, Vec<u8>)> {
        let parts = partitions.max(1);
        let mut by_part: Vec<Vec<Entry>> = vec![Vec::new(); parts as usize];
        for (i, s) in self.slots.iter().enumerate() {
            if s.count == 0 {
                continue;
            }
            let w = self.word(s);
            let mut key = [0u8; 8];
            let k = w.len().min(8);
            key[..k].copy_from_slice(&w[..k]);
            by_part[partial::partition_of(w, parts) as usize].push(Entry {
                key: u64::from_be_bytes(key),
                count: s.count,
                slot: i as u32,
                len: s.len,
            });
        }
        let mut scratch = Vec::new();
        by_part
            .into_iter()
            .enumerate()
            .filter(|(_, e)| !e.is_empty())
            .map(|(p, mut entries)| {
                radix_sort(&mut entries, &mut scratch);
                self.sort_equal_prefixes(&mut entries);
                let long: usize = entries.iter().map(|e| e.len as usize).sum();
                let mut blob = partial::Encoder::new(entries.len(), entries.len() * 3 + long);
                for e in &entries {
                    if e.len <= 8 {
                        blob.push(&e.key.to_be_bytes()[..e.len as usize], e.count);
                    } else {
                        blob.push(self.word(&self.slots[e.slot as usize]), e.count);
                    }
                }
                (p as u32, blob.finish())
            })
            .collect()
    }

    /// Sorts each run of entries with the same 8-byte prefix by the words' bytes (words longer
    /// than 8 bytes, or shorter ones ending in zero bytes).
    fn sort_equal_prefixes(&self, entries: &mut [Entry]) {
        let mut at = 0;
        while at < entries.len() {
            let mut end = at + 1;
            while end < entries.len() && entries[end].key == entries[at].key {
                end += 1;
            }
            if end - at > 1 {
                entries[at..end].sort_unstable_by(|a, b| {
                    self.word(&self.slots[a.slot as usize])
                        .cmp(self.word(&self.slots[b.slot as usize]))
                });
            }
            at = end;
        }
    }
}

/// A word on its way into a blob (see [`WordCounts::partition_blobs`]).
#[derive(Clone, Copy, Default)]
struct Entry {
    /// The word's first 8 bytes, zero-padded, big-endian: ordered as the words' prefixes.
    key: u64,
    count: u64,
    slot: u32,
    len: u32,
}

/// The (word, count) pairs of a [`WordCounts`]; knows how many are left (a commit sizes its
/// request from it).
pub struct Iter<'a> {
    table: &'a WordCounts,
    slots: std::slice::Iter<'a, Slot>,
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], u64);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.slots.by_ref().find(|s| s.count > 0)?;
        self.left -= 1;
        Some((self.table.word(s), s.count))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// LSD radix sort by `key`, a byte per pass, skipping passes where every key has the same byte
/// (short words share their low bytes: zeros).
fn radix_sort(v: &mut Vec<Entry>, scratch: &mut Vec<Entry>) {
    if v.len() < 256 {
        v.sort_unstable_by_key(|e| e.key);
        return;
    }
    let mut counts = [[0usize; 256]; 8];
    for e in v.iter() {
        for (b, c) in counts.iter_mut().enumerate() {
            c[((e.key >> (8 * b)) & 0xff) as usize] += 1;
        }
    }
    scratch.clear();
    scratch.resize(v.len(), Entry::default());
    for (b, c) in counts.iter().enumerate() {
        if c.contains(&v.len()) {
            continue;
        }
        let mut offsets = [0usize; 256];
        let mut sum = 0;
        for (o, &n) in offsets.iter_mut().zip(c.iter()) {
            *o = sum;
            sum += n;
        }
        for e in v.iter() {
            let d = ((e.key >> (8 * b)) & 0xff) as usize;
            scratch[offsets[d]] = *e;
            offsets[d] += 1;
        }
        std::mem::swap(v, scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_long_and_closed_tables_count_exactly() {
        let long = b"a-word-much-longer-than-sixteen-bytes";
        let mut t = WordCounts::new();
        for w in [
            &b"a"[..],
            b"ab",
            b"a",
            &long[..],
            &long[..],
            b"sixteen-bytes-xx",
            b"",
        ] {
            if !w.is_empty() {
                t.add(w);
            }
        }
        let mut got: Vec<_> = t.iter().map(|(w, n)| (w.to_vec(), n)).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), 2),
                (long.to_vec(), 2),
                (b"ab".to_vec(), 1),
                (b"sixteen-bytes-xx".to_vec(), 1)
            ]
        );
        assert_eq!(t.total(), 6);
        let mut d = WordCounts::only([&b"ab"[..], &long[..]]);
        for w in [&b"ab"[..], b"a", &long[..], b"zz"] {
            d.add(w);
        }
        assert_eq!(d.total(), 2);
        assert_eq!(d.len(), 2);
        assert!(d.contains(b"ab") && !d.contains(b"a"));
        d.clear();
        assert!(d.is_empty() && d.contains(b"ab"));
    }

    #[test]
    fn growing_and_clearing_keep_every_word() {
        let mut t = WordCounts::new();
        for i in 0..100_000u32 {
            t.add(format!("w{i}").as_bytes());
            t.add(format!("a-longer-word-number-{i}").as_bytes());
        }
        assert_eq!(t.len(), 200_000);
        assert!(t.iter().all(|(_, n)| n == 1));
        t.clear();
        assert!(t.is_empty() && t.iter().next().is_none());
        t.add(b"x");
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![(&b"x"[..], 1)]);
    }

    #[test]
    fn blobs_are_the_same_bytes_as_the_generic_encoder() {
        let mut t = WordCounts::new();
        let mut x = 7u64;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let w = format!(
                "{:x}{}",
                x % 5000,
                if x.is_multiple_of(3) {
                    "-and-a-long-tail"
                } else {
                    ""
                }
            );
            t.add(w.as_bytes());
        }
        t.add(b"\x00");
        t.add(b"\x00\x00");
        t.add(b"abcdefgh");
        t.add(b"abcdefgh\x00");
        for parts in [1, 3, 16] {
            assert_eq!(
                t.partition_blobs(parts),
                partial::partition_blobs(t.iter(), parts)
            );
        }
    }
}
