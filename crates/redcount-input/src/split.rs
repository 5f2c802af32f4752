//! Cutting files into byte-range tasks so one huge file still keeps every worker busy.
//!
//! In text, a cut is placed on a whitespace byte, so every word lies wholly inside one task and the
//! counts are exact wherever the cuts fall; a file with no whitespace after a target point (one enormous
//! word) stays in one piece from there. In CSV, a cut is placed after a record's newline, found by
//! following the quotes from the start of the file (RFC 4180: a newline inside quotes is data); the
//! worker of a later piece reads the header record from the start of the file.

use std::io::SeekFrom;
use std::path::Path;

use crate::read::{open, ReadSeek};
use crate::Format;
use crate::InputFile;
use redcount_count::is_space;

use crate::compressed::Compression;
use crate::InputError;

/// Byte ranges `[start, end)` covering the input (a file, or an object in its planned version): one
/// range if it is at most `split_bytes` long, else ranges of about `split_bytes`, each ending where
/// a whitespace byte begins (text) or after a record (CSV). An empty input is one empty range.
pub fn split_file(
    input: &InputFile,
    format: Format,
    split_bytes: u64,
) -> Result<Vec<(u64, u64)>, InputError> {
    let (path, size) = (input.path.as_path(), input.size);
    // A range of a compressed stream is not text: such an input is one task, whatever its size.
    if size <= split_bytes || split_bytes == 0 || Compression::of(path).is_some() {
        return Ok(vec![(0, size)]);
    }
    let mut file = open(path, input.version.as_deref(), size)?;
    if format == Format::Csv {
        return csv_ranges(&mut file, size, split_bytes).map_err(|e| InputError::from_io(path, e));
    }
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

/// A place to cut bytes `start..end` of `path` in two, near the middle, where planning could
/// have cut it (text: at a whitespace byte; CSV: just after a record), so each word or record
/// lies wholly in one part; None when there is none strictly inside. For a worker narrowing
/// down the range that kills its workers.
pub fn cut_range(
    path: &Path,
    version: Option<&str>,
    format: Format,
    start: u64,
    end: u64,
) -> Result<Option<u64>, InputError> {
    if end <= start + 1 {
        return Ok(None);
    }
    let mid = start + (end - start) / 2;
    let mut file = open(path, version, end)?;
    let io = |e| InputError::from_io(path, e);
    let inside = |c: u64| c > start && c < end;
    if format == Format::Csv {
        // Records are found by following the quotes from the start of the file.
        let mut buf = vec![0u8; 1 << 20];
        let (mut at, mut quoted, mut first) = (0u64, false, None);
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        while at < end {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            for i in memchr::memchr2_iter(b'"', b'\n', &buf[..n]) {
                if buf[i] == b'"' {
                    quoted = !quoted;
                    continue;
                }
                let cut = at + i as u64 + 1;
                if quoted || !inside(cut) {
                    continue;
                }
                if cut >= mid {
                    return Ok(Some(cut));
                }
                first.get_or_insert(cut);
            }
            at += n as u64;
        }
        return Ok(first);
    }
    if let Some(cut) = next_space(&mut file, mid, end).map_err(io)? {
        if inside(cut) {
            return Ok(Some(cut));
        }
    }
    Ok(next_space(&mut file, start + 1, mid)
        .map_err(io)?
        .filter(|&c| inside(c)))
}

/// CSV ranges: cuts just after a newline that is outside quotes, about `split_bytes` apart.
fn csv_ranges(
    file: &mut dyn ReadSeek,
    size: u64,
    split_bytes: u64,
) -> std::io::Result<Vec<(u64, u64)>> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut ranges, mut start, mut at, mut quoted) = (Vec::new(), 0u64, 0u64, false);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for i in memchr::memchr2_iter(b'"', b'\n', &buf[..n]) {
            if buf[i] == b'"' {
                quoted = !quoted;
            } else if !quoted
                && at + i as u64 + 1 - start >= split_bytes
                && at + i as u64 + 1 < size
            {
                ranges.push((start, at + i as u64 + 1));
                start = at + i as u64 + 1;
            }
        }
        at += n as u64;
    }
    ranges.push((start, size.max(start)));
    Ok(ranges)
}

/// The header record of a CSV input: its bytes up to and including the first newline outside
/// quotes, read from before `before` (the start of a later piece, which the header precedes).
pub fn csv_header(path: &Path, version: Option<&str>, before: u64) -> Result<Vec<u8>, InputError> {
    let mut file = open(path, version, before)?;
    read_header(&mut file).map_err(|e| InputError::from_io(path, e))
}

fn read_header(file: &mut dyn ReadSeek) -> std::io::Result<Vec<u8>> {
    let mut header = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut quoted = false;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(header);
        }
        for i in memchr::memchr2_iter(b'"', b'\n', &buf[..n]) {
            if buf[i] == b'"' {
                quoted = !quoted;
            } else if !quoted {
                header.extend_from_slice(&buf[..=i]);
                return Ok(header);
            }
        }
        header.extend_from_slice(&buf[..n]);
    }
}

/// Offset of the first whitespace byte at or after `from`, if any before `size`.
fn next_space(file: &mut dyn ReadSeek, from: u64, size: u64) -> std::io::Result<Option<u64>> {
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

    pub(super) fn local(path: &Path, size: usize) -> InputFile {
        InputFile {
            path: path.to_path_buf(),
            size: size as u64,
            version: None,
        }
    }

    fn ranges(data: &[u8], split: u64) -> Vec<(u64, u64)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("f.txt");
        std::fs::write(&p, data).expect("write");
        split_file(&local(&p, data.len()), Format::Text, split).expect("splits")
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
    fn csv_cuts_fall_between_records_even_with_quoted_newlines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("t.csv");
        let mut data = b"id,text\n".to_vec();
        for i in 0..200 {
            data.extend(format!("{i},\"line one\nline \"\"two\"\", end\"\n").as_bytes());
        }
        std::fs::write(&p, &data).expect("write");
        let r = split_file(&local(&p, data.len()), Format::Csv, 100).expect("splits");
        assert!(r.len() > 10);
        assert_eq!((r[0].0, r[r.len() - 1].1), (0, data.len() as u64));
        for w in r.windows(2) {
            assert_eq!(w[0].1, w[1].0);
            // Every piece after the first starts with a record: digits then a comma.
            let piece = &data[w[1].0 as usize..];
            let comma = piece.iter().position(|&b| b == b',').expect("a comma");
            assert!(
                piece[..comma].iter().all(u8::is_ascii_digit),
                "{:?}",
                String::from_utf8_lossy(&piece[..20])
            );
        }
        assert_eq!(csv_header(&p, None, r[1].0).expect("header"), b"id,text\n");
    }

    #[test]
    fn small_and_empty_files_are_one_task() {
        assert_eq!(ranges(b"", 10), vec![(0, 0)]);
        assert_eq!(ranges(b"a b", 10), vec![(0, 3)]);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A CSV field: plain, or quoted with commas, newlines and doubled quotes inside.
    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z ]{0,6}",
            "[a-z,\n\" ]{0,8}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
        ]
    }

    fn records(data: &[u8]) -> Vec<Vec<Vec<u8>>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(data)
            .byte_records()
            .map(|r| {
                r.expect("a valid CSV piece")
                    .iter()
                    .map(<[u8]>::to_vec)
                    .collect()
            })
            .collect()
    }

    proptest! {
        #[test]
        fn csv_cuts_keep_every_record_whole(
            rows in proptest::collection::vec(proptest::collection::vec(field(), 3), 1..40),
            split in 1u64..200,
        ) {
            let mut text = String::from("id,text,more\n");
            for row in &rows {
                text.push_str(&row.join(","));
                text.push('\n');
            }
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("t.csv");
            std::fs::write(&path, &text).expect("write");
            let bytes = text.as_bytes();
            let ranges = split_file(&super::tests::local(&path, bytes.len()), Format::Csv, split)
                .expect("split");
            // The ranges tile the file, and every piece is whole records.
            prop_assert_eq!(ranges[0].0, 0);
            prop_assert_eq!(ranges.last().map(|r| r.1), Some(bytes.len() as u64));
            let mut pieces = Vec::new();
            for pair in ranges.windows(2) {
                prop_assert_eq!(pair[0].1, pair[1].0);
            }
            for &(s, e) in &ranges {
                pieces.extend(records(&bytes[s as usize..e as usize]));
            }
            prop_assert_eq!(pieces, records(bytes));
        }
    }
}
