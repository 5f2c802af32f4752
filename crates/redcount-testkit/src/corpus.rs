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
