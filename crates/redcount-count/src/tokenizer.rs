//! Tokenizers. The default is the oracle rule (docs/PROTOCOL.md): split on ASCII whitespace (space, \t, \n,
//! \v, \f, \r), keep case, words are raw bytes — exactly Python's `bytes.split()`.

use std::collections::HashSet;

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
    dictionary: Option<HashSet<Vec<u8>>>,
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
            dictionary,
        }
    }

    /// The oracle rule.
    pub fn whitespace() -> Tokenizer {
        Tokenizer::new(TokenizerKind::Whitespace, false, None)
    }

    /// Counts every word of `text` into `counts`.
    pub fn count(&self, text: &[u8], counts: &mut WordCounts) {
        let plain =
            self.kind == TokenizerKind::Whitespace && !self.lowercase && self.dictionary.is_none();
        if plain {
            // Fast path (the default): words are borrowed slices of the text, no copies.
            for_each_token(text, |w| counts.add(w));
            return;
        }
        let mut scratch = Vec::new();
        for_each_token(text, |token| {
            scratch.clear();
            match self.kind {
                TokenizerKind::Whitespace => scratch.extend_from_slice(token),
                TokenizerKind::Letters => {
                    scratch.extend(token.iter().copied().filter(u8::is_ascii_alphabetic))
                }
            }
            if scratch.is_empty() {
                return;
            }
            if self.lowercase {
                scratch.make_ascii_lowercase();
            }
            if self
                .dictionary
                .as_ref()
                .is_some_and(|d| !d.contains(&scratch))
            {
                return;
            }
            counts.add(&scratch);
        });
    }
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

    proptest! {
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
