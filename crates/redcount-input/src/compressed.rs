//! Compressed inputs (`.gz`, `.zst`): told by their name, never split (a byte range of a
//! compressed stream is not text), and decompressed as they are counted, a block at a time, each
//! block cut at its last whitespace so no word is cut in two.

use std::io::Read;
use std::path::Path;

use crate::read::MAX_WORD;
use crate::InputError;

/// How an input's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`.gz`; concatenated members too, as `zcat` reads them).
    Gzip,
    /// Zstandard (`.zst`; one frame, decoded by the pure-Rust ruzstd).
    Zstd,
}

impl Compression {
    /// The compression an input's name says, or None for a plain one.
    pub fn of(path: &Path) -> Option<Compression> {
        match path.extension()?.to_str()? {
            "gz" => Some(Compression::Gzip),
            "zst" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Decompressed bytes given to the counter at a time (plus the word carried over from the last).
const BLOCK: usize = 4 << 20;

/// Decompresses `compressed` (the whole input, as read) and hands the text to `text` a block at a
/// time, each ending at whitespace (the last block at the end). A run of more than [`MAX_WORD`]
/// bytes without whitespace is an error, as in a plain input.
pub fn for_each_block(
    path: &Path,
    compression: Compression,
    compressed: &[u8],
    mut text: impl FnMut(&[u8]),
) -> Result<(), InputError> {
    let broken = |e: std::io::Error| InputError::Unreadable {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            e.kind(),
            format!("not a valid {compression:?} stream ({e})"),
        ),
    };
    let mut reader: Box<dyn Read + '_> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(compressed)
                .map_err(|e| broken(std::io::Error::other(e.to_string())))?,
        ),
    };
    let mut block: Vec<u8> = Vec::with_capacity(BLOCK);
    // Where the word now at the start of `block` began in the decompressed text.
    let mut consumed: u64 = 0;
    loop {
        let filled = block.len();
        block.resize(filled + BLOCK, 0);
        let n = read_full(&mut reader, &mut block[filled..]).map_err(broken)?;
        block.truncate(filled + n);
        if n == 0 {
            text(&block);
            return Ok(());
        }
        match block
            .iter()
            .rposition(|b| b.is_ascii_whitespace() || *b == 0x0b)
        {
            Some(cut) => {
                text(&block[..cut]);
                block.drain(..cut);
                consumed += cut as u64;
            }
            None if block.len() as u64 > MAX_WORD => {
                return Err(InputError::WordTooLong {
                    path: path.to_path_buf(),
                    at: consumed,
                });
            }
            None => {}
        }
    }
}

/// Reads until `buf` is full or the stream ends; how many bytes were read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The whole decompressed text (a CSV input, parsed as one).
pub fn decompress_all(
    path: &Path,
    compression: Compression,
    compressed: &[u8],
) -> Result<Vec<u8>, InputError> {
    let mut all = Vec::new();
    for_each_block(path, compression, compressed, |block| {
        all.extend_from_slice(block)
    })?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("compress");
        e.finish().expect("finish")
    }

    #[test]
    fn blocks_end_at_whitespace_and_join_to_the_whole_text() {
        let mut text = Vec::new();
        let mut i = 0u64;
        while text.len() < 3 * BLOCK + 1234 {
            text.extend_from_slice(format!("word{} ", i % 977).as_bytes());
            i += 1;
        }
        text.extend_from_slice(b"last");
        let path = Path::new("x.gz");
        for compressed in [
            gzip(&text),
            ruzstd::encoding::compress_to_vec(
                &text[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
        ] {
            let compression = if compressed[0] == 0x1f {
                Compression::Gzip
            } else {
                Compression::Zstd
            };
            let mut joined = Vec::new();
            for_each_block(path, compression, &compressed, |b| {
                assert!(b.is_empty() || joined.is_empty() || b[0].is_ascii_whitespace());
                joined.extend_from_slice(b);
            })
            .expect("decompress");
            assert_eq!(joined, text);
        }
    }

    #[test]
    fn concatenated_gzip_members_are_read_whole_and_garbage_is_named() {
        let mut two = gzip(b"one two ");
        two.extend(gzip(b"three\n"));
        let all = decompress_all(Path::new("a.gz"), Compression::Gzip, &two).expect("read");
        assert_eq!(all, b"one two three\n");
        let err = decompress_all(Path::new("bad.gz"), Compression::Gzip, b"not gzip at all")
            .expect_err("garbage");
        assert!(err.to_string().contains("bad.gz"), "{err}");
        assert_eq!(
            Compression::of(Path::new("/d/a.txt.zst")),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::of(Path::new("/d/a.txt")), None);
    }
}
