//! Cutting files into byte-range tasks so one huge file still keeps every worker busy.
//!
//! A cut is placed on a whitespace byte, so every word lies wholly inside one task and the counts are
//! exact wherever the cuts fall. A file with no whitespace after a target point (one enormous word)
//! simply stays in one piece from there.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use redcount_count::is_space;
use redcount_protocol::Format;

use crate::InputError;

/// Byte ranges `[start, end)` covering the file: one range if it is at most `split_bytes` long (or
/// CSV, which is never split: a cut could fall inside a quoted field), else ranges of about
/// `split_bytes`, each ending where a whitespace byte begins. An empty file is one empty range.
pub fn split_file(
    path: &Path,
    size: u64,
    format: Format,
    split_bytes: u64,
) -> Result<Vec<(u64, u64)>, InputError> {
    if format == Format::Csv || size <= split_bytes || split_bytes == 0 {
        return Ok(vec![(0, size)]);
    }
    let mut file = File::open(path).map_err(|e| InputError::from_io(path, e))?;
    let mut ranges = Vec::new();
    let mut start = 0;
    while size - start > split_bytes {
        match next_space(&mut file, start + split_bytes, size)
            .map_err(|e| InputError::from_io(path, e))?
        {
            Some(cut) => {
                ranges.push((start, cut));
                start = cut;
            }
            None => break,
        }
    }
    ranges.push((start, size));
    Ok(ranges)
}

/// Offset of the first whitespace byte at or after `from`, if any before `size`.
fn next_space(file: &mut File, from: u64, size: u64) -> std::io::Result<Option<u64>> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = from;
    file.seek(SeekFrom::Start(from))?;
    while at < size {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|&b| is_space(b)) {
            return Ok(Some(at + i as u64));
        }
        at += n as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(data: &[u8], split: u64) -> Vec<(u64, u64)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("f.txt");
        std::fs::write(&p, data).expect("write");
        split_file(&p, data.len() as u64, Format::Text, split).expect("splits")
    }

    #[test]
    fn cuts_land_on_whitespace_and_cover_the_file() {
        let data = b"alpha beta gamma delta epsilon zeta eta theta";
        let r = ranges(data, 7);
        assert_eq!(r.first().map(|r| r.0), Some(0));
        assert_eq!(r.last().map(|r| r.1), Some(data.len() as u64));
        for w in r.windows(2) {
            assert_eq!(w[0].1, w[1].0, "ranges are contiguous");
            assert!(
                is_space(data[w[0].1 as usize]),
                "cut at {} is whitespace",
                w[0].1
            );
        }
        assert!(r.len() > 3);
    }

    #[test]
    fn one_enormous_word_stays_whole() {
        let mut data = vec![b'x'; 10_000];
        data.extend_from_slice(b" tail");
        assert_eq!(ranges(&data, 100), vec![(0, 10_000), (10_000, 10_005)]);
        assert_eq!(ranges(&[b'y'; 5000], 100), vec![(0, 5000)]);
    }

    #[test]
    fn small_and_empty_files_are_one_task() {
        assert_eq!(ranges(b"", 10), vec![(0, 0)]);
        assert_eq!(ranges(b"a b", 10), vec![(0, 3)]);
    }
}
