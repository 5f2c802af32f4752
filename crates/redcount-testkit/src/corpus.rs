//! Seeded corpora for tests: text with every whitespace byte, punctuation, case, non-UTF-8 bytes.

use std::path::{Path, PathBuf};

/// The sample corpus shipped in the repository (U.S. State of the Union addresses, public domain).
pub fn sample_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/sotu")
}

/// A small deterministic PRNG (xorshift64*), so every test corpus is the same on every run.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (the same seed, the same numbers).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

const WORDS: &[&[u8]] = &[
    b"the",
    b"The",
    b"THE",
    b"of",
    b"and",
    b"union",
    b"Union,",
    b"state",
    b"(state)",
    b"peace.",
    b"caf\xc3\xa9",
    b"na\xefve",
    b"\xff\xfe",
    b"x",
    b"--",
    b"don't",
    b"\"quoted\"",
    b"a,b",
    b"tab",
    b"\xe2\x80\x9csmart\xe2\x80\x9d",
    b"1790",
    b"Congress",
    b"congress",
    b"\xa0nbsp",
];
const SPACES: &[&[u8]] = &[
    b" ", b" ", b" ", b"  ", b"\n", b"\t", b"\r\n", b"\x0b", b"\x0c", b"\n\n",
];

/// Writes `files` text files of `min..max` bytes each into `dir`; returns their paths.
pub fn write_text_corpus(dir: &Path, files: usize, min: u64, max: u64, seed: u64) -> Vec<PathBuf> {
    let mut rng = Rng::new(seed);
    std::fs::create_dir_all(dir).expect("create corpus dir");
    (0..files)
        .map(|i| {
            let size = rng.range(min, max);
            let path = dir.join(format!("doc-{i:05}.txt"));
            std::fs::write(&path, text(&mut rng, size)).expect("write corpus file");
            path
        })
        .collect()
}

/// About `size` bytes of seeded text.
pub fn text(rng: &mut Rng, size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size as usize + 32);
    while (out.len() as u64) < size {
        out.extend_from_slice(WORDS[rng.range(0, WORDS.len() as u64) as usize]);
        out.extend_from_slice(SPACES[rng.range(0, SPACES.len() as u64) as usize]);
    }
    out.truncate(size as usize);
    out
}

/// About `size` bytes of English-like text over a vocabulary of `vocab` words (seeded): word
/// lengths like English (2-12 letters, a few longer), drawn with Zipf-like frequencies, capitalised
/// after a full stop, some followed by a comma or a full stop, lines of about 70 bytes. Lowercased,
/// it has about `vocab` distinct words; the shape of a book such as the Bible for word counters.
pub fn english_like(seed: u64, size: usize, vocab: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let words: Vec<Vec<u8>> = (0..vocab.max(1))
        .map(|_| {
            let len = match rng.range(0, 100) {
                0..=14 => rng.range(1, 3),
                15..=84 => rng.range(3, 8),
                85..=97 => rng.range(8, 13),
                _ => rng.range(13, 20),
            };
            (0..len).map(|_| b'a' + rng.range(0, 26) as u8).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(size + 64);
    let mut line = 0usize;
    let mut capital = true;
    while out.len() < size {
        // Zipf-like: the rank is vocab^u for u uniform in [0, 1), so rank r is drawn ~1/r often.
        let u = rng.next_u64() as f64 / u64::MAX as f64;
        let rank = ((vocab as f64).powf(u) as usize)
            .saturating_sub(1)
            .min(vocab - 1);
        let word = &words[rank];
        let start = out.len();
        out.extend_from_slice(word);
        if capital {
            out[start] = out[start].to_ascii_uppercase();
        }
        capital = false;
        match rng.range(0, 100) {
            0..=5 => out.push(b','),
            6..=9 => {
                out.push(b'.');
                capital = true;
            }
            _ => {}
        }
        line += out.len() - start + 1;
        if line > 70 {
            out.push(b'\n');
            line = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(size);
    out
}
