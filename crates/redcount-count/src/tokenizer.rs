//! Tokenizers. The default is the oracle rule (docs/PROTOCOL.md): split on ASCII whitespace (space, \t, \n,
//! \v, \f, \r), keep case, words are raw bytes — exactly Python's `bytes.split()`.

use std::collections::HashSet;

use crate::scan;
use crate::table::{halves, Head, INLINE};
use crate::WordCounts;

/// How words are cut out of text (`--tokenizer`, and `cfg.tokenizer` in a job's spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum TokenizerKind {
    /// Split on ASCII whitespace; words are raw bytes, case kept (Python's bytes.split()).
    #[default]
    Whitespace,
    /// As whitespace, then delete every byte that is not an ASCII letter; drop empty words.
    Letters,
}

impl TokenizerKind {
    /// Parses `whitespace` or `letters`.
    pub fn parse(s: &str) -> Option<TokenizerKind> {
        match s {
            "whitespace" | "" => Some(TokenizerKind::Whitespace),
            "letters" => Some(TokenizerKind::Letters),
            _ => None,
        }
    }

    /// The name on the command line and in the job's spec.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenizerKind::Whitespace => "whitespace",
            TokenizerKind::Letters => "letters",
        }
    }
}

/// A configured tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    kind: TokenizerKind,
    lowercase: bool,
    /// The `--dictionary` words as a closed table at zero ([`WordCounts::only`]).
    dictionary: Option<WordCounts>,
}

/// The six bytes Python's `bytes.split()` treats as whitespace.
const fn whitespace_table() -> [bool; 256] {
    let mut t = [false; 256];
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t[b'\n' as usize] = true;
    t[0x0b] = true;
    t[0x0c] = true;
    t[b'\r' as usize] = true;
    t
}
static WHITESPACE: [bool; 256] = whitespace_table();

/// True for the ASCII whitespace bytes of the oracle rule.
#[inline]
pub fn is_space(b: u8) -> bool {
    WHITESPACE[b as usize]
}

impl Tokenizer {
    /// A tokenizer; `dictionary`, when given, keeps only the words it lists (after the other rules).
    pub fn new(kind: TokenizerKind, lowercase: bool, dictionary: Option<HashSet<Vec<u8>>>) -> Self {
        Tokenizer {
            kind,
            lowercase,
            dictionary: dictionary.map(|d| WordCounts::only(d.iter().map(Vec::as_slice))),
        }
    }

    /// The oracle rule.
    pub fn whitespace() -> Tokenizer {
        Tokenizer::new(TokenizerKind::Whitespace, false, None)
    }

    /// An empty table to count into: with a dictionary, a closed one holding its words, so a word
    /// is checked against the dictionary by the lookup that counts it.
    pub fn new_counts(&self) -> WordCounts {
        match &self.dictionary {
            Some(words) => {
                let mut t = words.clone();
                t.clear();
                t
            }
            None => WordCounts::new(),
        }
    }

    /// Counts every word of `text` into `counts`.
    pub fn count(&self, text: &[u8], counts: &mut WordCounts) {
        if self.dictionary.is_some() && !counts.is_closed() {
            // An open table: count into a closed one first, so only dictionary words reach it.
            let mut own = self.new_counts();
            self.count(text, &mut own);
            counts.merge(&own);
            return;
        }
        // One loop, specialised at compile time for each rule, so the default pays for no option.
        match (self.kind, self.lowercase) {
            (TokenizerKind::Whitespace, false) => count_words::<false, false>(text, counts),
            (TokenizerKind::Whitespace, true) => count_words::<true, false>(text, counts),
            (TokenizerKind::Letters, false) => count_words::<false, true>(text, counts),
            (TokenizerKind::Letters, true) => count_words::<true, true>(text, counts),
        }
    }
}

/// The counting kernel: every word of `text` found by [`scan::for_each_word`], loaded as two
/// padded `u64`s straight from the text, lowercased in those registers (`LOWER`), kept to its ASCII
/// letters (`LETTERS`: most words are letters only, and they take the same path as the default),
/// hashed once and counted. Only words longer than 16 bytes that must be changed, and words with
/// non-letters under `LETTERS`, are copied into a scratch buffer.
///
/// Lookups are issued a few words ahead of the counting ([`AHEAD`]): on a table larger than the
/// caches (millions of distinct ids) each probe is a cache miss, and prefetched misses overlap.
#[inline(always)]
fn count_words<const LOWER: bool, const LETTERS: bool>(text: &[u8], counts: &mut WordCounts) {
    let mut scratch: Vec<u8> = Vec::new();
    let mut ahead = Ahead::new(counts);
    scan::for_each_word(text, |start, end| {
        let word = &text[start..end];
        if word.len() <= INLINE {
            let (mut lo, mut hi) = load_head(text, start, word.len());
            let mut len = word.len();
            if LETTERS {
                // Letters only (most words), or letters then punctuation ("said," "end."): the
                // word is its first `len` bytes, cut in registers. Anything else is filtered below.
                match letter_prefix(lo, hi, len) {
                    Some(0) => return,
                    Some(k) => {
                        len = k;
                        (lo, hi) = keep_low(lo, hi, k);
                    }
                    None => {
                        count_filtered::<LOWER>(word, &mut scratch, ahead.counts);
                        return;
                    }
                }
            }
            if LOWER {
                lo = lowercase8(lo);
                hi = lowercase8(hi);
            }
            ahead.push(Head::short(lo, hi, len));
        } else if LETTERS {
            count_filtered::<LOWER>(word, &mut scratch, ahead.counts);
        } else if LOWER {
            scratch.clear();
            scratch.extend_from_slice(word);
            scratch.make_ascii_lowercase();
            ahead.counts.add(&scratch);
        } else {
            ahead.counts.add(word);
        }
    });
    ahead.finish();
}

/// Counts the ASCII letters of `word` as a word (lowercased with `LOWER`), if it has any.
fn count_filtered<const LOWER: bool>(word: &[u8], scratch: &mut Vec<u8>, counts: &mut WordCounts) {
    scratch.clear();
    scratch.extend(word.iter().copied().filter(u8::is_ascii_alphabetic));
    if !scratch.is_empty() {
        if LOWER {
            scratch.make_ascii_lowercase();
        }
        counts.add(scratch);
    }
}

/// For a word of `len` bytes held in `lo`/`hi`: `Some(k)` when it is `k` ASCII letters followed
/// only by non-letters (so its letters are its first `k` bytes; `Some(0)`: no letter at all), `None`
/// when letters and non-letters mix otherwise. Each byte is tested at once, in a 128-bit register.
#[inline(always)]
fn letter_prefix(lo: u64, hi: u64, len: usize) -> Option<usize> {
    const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    let x = (u128::from(hi) << 64 | u128::from(lo)) | (0x20 * ONES);
    let heptets = x & (0x7f * ONES);
    let at_least_a = heptets + (0x80 - u128::from(b'a')) * ONES;
    let beyond_z = heptets + (0x7f - u128::from(b'z')) * ONES;
    // High bit of each byte: an ASCII letter (the 0x20 bit was set, so upper case is lower here).
    let letters = (at_least_a ^ beyond_z) & !x & (0x80 * ONES);
    let in_word = (0x80 * ONES) & low_bytes128(len);
    let others = in_word & !letters;
    if others == 0 {
        return Some(len);
    }
    let k = (others.trailing_zeros() / 8) as usize;
    // No letter from the first non-letter on.
    (letters & !low_bytes128(k) == 0).then_some(k)
}

/// A mask of the low `n` bytes of a `u128` (n <= 16).
#[inline(always)]
fn low_bytes128(n: usize) -> u128 {
    if n >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * n)) - 1
    }
}

/// The first `k` bytes of a padded word, the rest zeroed.
#[inline(always)]
fn keep_low(lo: u64, hi: u64, k: usize) -> (u64, u64) {
    if k >= 8 {
        (lo, hi & low_bytes(k - 8))
    } else {
        (lo & low_bytes(k), 0)
    }
}

/// How many short words are looked up ahead of being counted.
const AHEAD: usize = 8;

/// The words whose slots are being prefetched, oldest counted first (counting is commutative, so
/// counting a word a few words late changes nothing). Only used once the table outgrows the L2
/// cache: below that, a prefetch costs more than the miss it hides.
struct Ahead<'a> {
    counts: &'a mut WordCounts,
    ring: [Head; AHEAD],
    pending: usize,
    next: usize,
}

impl<'a> Ahead<'a> {
    fn new(counts: &'a mut WordCounts) -> Ahead<'a> {
        Ahead {
            counts,
            ring: [Head::short(0, 0, 0); AHEAD],
            pending: 0,
            next: 0,
        }
    }

    #[inline(always)]
    fn push(&mut self, h: Head) {
        if !self.counts.is_large() {
            self.counts.add_head(&h, &[], 1);
            return;
        }
        self.counts.prefetch(h.hash);
        if self.pending == AHEAD {
            let old = self.ring[self.next];
            self.counts.add_head(&old, &[], 1);
        } else {
            self.pending += 1;
        }
        self.ring[self.next] = h;
        self.next = (self.next + 1) % AHEAD;
    }

    fn finish(self) {
        for h in &self.ring[..self.pending] {
            self.counts.add_head(h, &[], 1);
        }
    }
}

/// The word of `len` (at most 16) bytes at `start`, zero-padded, as two little-endian `u64`s: one
/// 16-byte load and masks, except within 16 bytes of the text's end.
#[inline(always)]
fn load_head(text: &[u8], start: usize, len: usize) -> (u64, u64) {
    let (lo, hi) = match text.get(start..start + INLINE) {
        Some(bytes) => halves(bytes.try_into().unwrap_or(&[0; INLINE])),
        None => {
            let mut bytes = [0u8; INLINE];
            bytes[..len].copy_from_slice(&text[start..start + len]);
            halves(&bytes)
        }
    };
    keep_low(lo, hi, len)
}

/// A mask of the low `n` bytes of a `u64` (n <= 8).
#[inline(always)]
fn low_bytes(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

/// ASCII-lowercases the 8 bytes of `x` at once (the trick of the standard library's
/// `make_ascii_lowercase` on words): bytes >= 0x80 and non-letters are left alone.
#[inline(always)]
fn lowercase8(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let heptets = x & (0x7f * ONES);
    let at_least_a = heptets + (0x80 - u64::from(b'A')) * ONES;
    let beyond_z = heptets + (0x7f - u64::from(b'Z')) * ONES;
    let upper = (at_least_a ^ beyond_z) & !x & (0x80 * ONES);
    x | (upper >> 2)
}

/// Calls `f` with every maximal run of non-whitespace bytes.
#[inline]
pub fn for_each_token(text: &[u8], mut f: impl FnMut(&[u8])) {
    let mut i = 0;
    let n = text.len();
    while i < n {
        while i < n && is_space(text[i]) {
            i += 1;
        }
        let start = i;
        while i < n && !is_space(text[i]) {
            i += 1;
        }
        if i > start {
            f(&text[start..i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(t: &Tokenizer, text: &[u8]) -> Vec<(Vec<u8>, u64)> {
        let mut c = WordCounts::new();
        t.count(text, &mut c);
        let mut v: Vec<_> = c.iter().map(|(w, n)| (w.to_vec(), n)).collect();
        v.sort();
        v
    }

    #[test]
    fn whitespace_is_exactly_the_six_ascii_bytes() {
        let text = b"a\tb\nc\x0bd\x0ce\rf g\xa0h \x1ci";
        let words: Vec<_> = count(&Tokenizer::whitespace(), text)
            .into_iter()
            .map(|(w, _)| w)
            .collect();
        // 0xA0 (NBSP in Latin-1) and 0x1C (file separator) are not whitespace for bytes.split().
        assert_eq!(
            words,
            vec![
                b"\x1ci".to_vec(),
                b"a".to_vec(),
                b"b".to_vec(),
                b"c".to_vec(),
                b"d".to_vec(),
                b"e".to_vec(),
                b"f".to_vec(),
                b"g\xa0h".to_vec(),
            ]
        );
    }

    #[test]
    fn case_and_punctuation_are_kept_by_default() {
        let got = count(&Tokenizer::whitespace(), b"The the, THE the");
        assert_eq!(
            got,
            vec![
                (b"THE".to_vec(), 1),
                (b"The".to_vec(), 1),
                (b"the".to_vec(), 1),
                (b"the,".to_vec(), 1)
            ]
        );
    }

    #[test]
    fn letters_lowercase_and_dictionary_reproduce_the_lab_rule() {
        let dict: HashSet<Vec<u8>> = [b"hello".to_vec(), b"world".to_vec()].into_iter().collect();
        let t = Tokenizer::new(TokenizerKind::Letters, true, Some(dict));
        let got = count(&t, b"Hello, WORLD! hel-lo 123 @user world's");
        assert_eq!(got, vec![(b"hello".to_vec(), 2), (b"world".to_vec(), 1)]);
    }

    #[test]
    fn a_table_larger_than_the_caches_counts_like_the_reference() {
        // 300,000 distinct words: the table outgrows L2, so words are looked up ahead (prefetched).
        let mut text = Vec::new();
        for i in 0..600_000u64 {
            let id = (i * 7919) % 300_000;
            text.extend_from_slice(
                format!(
                    "Id{id:x}{} ",
                    if id % 5 == 0 {
                        "-with-a-long-suffix"
                    } else {
                        ""
                    }
                )
                .as_bytes(),
            );
        }
        for (kind, lowercase) in [
            (TokenizerKind::Whitespace, false),
            (TokenizerKind::Letters, true),
        ] {
            let mut expected = crate::reference::ReferenceCounts::new();
            crate::reference::count(kind, lowercase, None, &text, &mut expected);
            let mut counts = WordCounts::new();
            Tokenizer::new(kind, lowercase, None).count(&text, &mut counts);
            let got: std::collections::HashMap<Vec<u8>, u64> =
                counts.iter().map(|(w, n)| (w.to_vec(), n)).collect();
            assert_eq!(got, expected.into_iter().collect());
        }
    }

    #[test]
    fn letters_drops_tokens_with_no_letters() {
        let t = Tokenizer::new(TokenizerKind::Letters, false, None);
        assert_eq!(count(&t, b"123 -- Ab1c"), vec![(b"Abc".to_vec(), 1)]);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// The rule written out naively: split on the six whitespace bytes, drop empty pieces.
    fn naive(text: &[u8]) -> HashMap<Vec<u8>, u64> {
        let mut out = HashMap::new();
        for w in text
            .split(|b| b" \t\n\x0b\x0c\r".contains(b))
            .filter(|w| !w.is_empty())
        {
            *out.entry(w.to_vec()).or_insert(0) += 1;
        }
        out
    }

    /// Text made of words of 0-300 bytes (letters of both cases, digits, punctuation, NUL, bytes
    /// from 0x80 up) between runs of all six whitespace bytes, so words cross every 64-byte block and end
    /// at every distance from the end of the text.
    fn text() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => proptest::sample::select(b"aAbBzZqQeE".to_vec()),
            1 => proptest::sample::select(b"0@[`{-,.'\x00\x7f".to_vec()),
            1 => 0x80u8..=0xff,
            1 => any::<u8>(),
        ];
        let word = prop_oneof![
            6 => proptest::collection::vec(byte.clone(), 0..12),
            2 => proptest::collection::vec(byte.clone(), 12..40),
            1 => proptest::collection::vec(byte, 40..300),
        ];
        let space =
            proptest::collection::vec(proptest::sample::select(b" \t\n\x0b\x0c\r".to_vec()), 0..3);
        proptest::collection::vec((word, space), 0..60).prop_map(|parts| {
            parts
                .into_iter()
                .flat_map(|(w, s)| w.into_iter().chain(s))
                .collect()
        })
    }

    fn as_map(counts: &WordCounts) -> HashMap<Vec<u8>, u64> {
        counts.iter().map(|(w, n)| (w.to_vec(), n)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The kernel against the loop it replaced, for every rule, with and without a dictionary,
        /// counting into a fresh table, a reused one and an open one, and the blobs it builds.
        #[test]
        fn the_kernel_counts_like_the_reference_loop(
            text in text(),
            cut in 0usize..64,
            kind in prop_oneof![Just(TokenizerKind::Whitespace), Just(TokenizerKind::Letters)],
            lowercase in any::<bool>(),
            with_dictionary in any::<bool>(),
        ) {
            // Dictionary: every other distinct word of the text as the rule would make it.
            let dictionary: Option<HashSet<Vec<u8>>> = with_dictionary.then(|| {
                let mut all = crate::reference::ReferenceCounts::new();
                crate::reference::count(kind, lowercase, None, &text, &mut all);
                let mut words: Vec<Vec<u8>> = all.into_keys().collect();
                words.sort();
                words.into_iter().step_by(2).collect()
            });
            let mut expected = crate::reference::ReferenceCounts::new();
            crate::reference::count(kind, lowercase, dictionary.as_ref(), &text, &mut expected);
            let expected: HashMap<Vec<u8>, u64> = expected.into_iter().collect();

            let tokenizer = Tokenizer::new(kind, lowercase, dictionary);
            let mut fresh = tokenizer.new_counts();
            // Counted in two calls cut anywhere (a task's pieces are counted one at a time).
            let cut = cut.min(text.len());
            let (a, b) = text.split_at(cut);
            let (a, b) = match (a.last(), b.first()) {
                (Some(x), Some(y)) if !is_space(*x) && !is_space(*y) => (&text[..], &text[..0]),
                _ => (a, b),
            };
            tokenizer.count(a, &mut fresh);
            tokenizer.count(b, &mut fresh);
            prop_assert_eq!(as_map(&fresh), expected.clone());
            prop_assert_eq!(fresh.total(), expected.values().sum::<u64>());

            let mut reused = tokenizer.new_counts();
            tokenizer.count(b"some earlier words EARLIER", &mut reused);
            reused.clear();
            tokenizer.count(&text, &mut reused);
            prop_assert_eq!(as_map(&reused), expected.clone());

            let mut open = WordCounts::new();
            tokenizer.count(&text, &mut open);
            prop_assert_eq!(as_map(&open), expected);

            prop_assert_eq!(
                fresh.partition_blobs(5),
                crate::partial::partition_blobs(fresh.iter(), 5)
            );
        }

        #[test]
        fn the_whitespace_tokenizer_counts_like_the_naive_rule(
            text in proptest::collection::vec(
                prop_oneof![Just(b' '), Just(b'\n'), Just(b'\t'), Just(b'\r'), Just(0x0b), Just(0x0c),
                            Just(b'a'), Just(b'b'), any::<u8>()],
                0..400,
            )
        ) {
            let mut counts = WordCounts::new();
            Tokenizer::whitespace().count(&text, &mut counts);
            let got: HashMap<Vec<u8>, u64> = counts.iter().map(|(w, n)| (w.to_vec(), n)).collect();
            prop_assert_eq!(got, naive(&text));
        }

        #[test]
        fn letters_lowercased_keeps_only_ascii_letters(text in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut counts = WordCounts::new();
            Tokenizer::new(TokenizerKind::Letters, true, None).count(&text, &mut counts);
            let mut expected: HashMap<Vec<u8>, u64> = HashMap::new();
            for (w, n) in naive(&text) {
                let kept: Vec<u8> = w.iter().filter(|b| b.is_ascii_alphabetic()).map(|b| b.to_ascii_lowercase()).collect();
                if !kept.is_empty() {
                    *expected.entry(kept).or_insert(0) += n;
                }
            }
            let got: HashMap<Vec<u8>, u64> = counts.iter().map(|(w, n)| (w.to_vec(), n)).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
