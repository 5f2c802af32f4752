//! Partial counts as compact bytes: what a commit stores in Redis instead of one increment per word,
//! and what a merge reads and writes. A blob is `RCP1`, the number of entries as a varint, then each
//! entry as `varint word length, word bytes, varint count`, words in ascending byte order and each
//! once, so two blobs merge in one linear pass. Words are spread over a job's partitions by
//! [`partition_of`], so every partition can be merged on its own, by any worker.

const MAGIC: &[u8; 4] = b"RCP1";

/// Why bytes are not a partial-counts blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a redcount partial-counts blob: {0}")]
pub struct BadBlob(&'static str);

/// The partition of `word` among `partitions` (FNV-1a, the same on every host and version).
pub fn partition_of(word: &[u8], partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in word {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1))) as u32
}

/// Sorted (word, count) entries of one partition.
pub type Entries = Vec<(Vec<u8>, u64)>;

/// Splits (word, count) entries (each word once) by partition, each part sorted by word.
pub fn split_by_partition<'a>(
    entries: impl Iterator<Item = (&'a [u8], u64)>,
    partitions: u32,
) -> Vec<Vec<(&'a [u8], u64)>> {
    let mut parts: Vec<Vec<(&[u8], u64)>> = vec![Vec::new(); partitions.max(1) as usize];
    for (word, n) in entries {
        parts[partition_of(word, partitions) as usize].push((word, n));
    }
    for part in &mut parts {
        part.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    parts
}

/// What a commit stores: one blob per partition that has words, `(partition, blob)`.
pub fn partition_blobs<'a>(
    entries: impl Iterator<Item = (&'a [u8], u64)>,
    partitions: u32,
) -> Vec<(u32, Vec<u8>)> {
    split_by_partition(entries, partitions)
        .into_iter()
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(|(p, part)| (p as u32, encode(part.into_iter())))
        .collect()
}

/// Encodes entries sorted by word (each word once).
pub fn encode<'a>(entries: impl ExactSizeIterator<Item = (&'a [u8], u64)>) -> Vec<u8> {
    let mut out = Encoder::new(entries.len(), entries.len() * 10);
    for (word, n) in entries {
        out.push(word, n);
    }
    out.finish()
}

/// Writes a blob entry by entry, the caller giving them sorted by word (each word once) and their
/// number up front.
pub struct Encoder(Vec<u8>);

impl Encoder {
    /// A blob of `entries` entries, about `bytes` long.
    pub fn new(entries: usize, bytes: usize) -> Encoder {
        let mut out = Vec::with_capacity(14 + bytes);
        out.extend_from_slice(MAGIC);
        put_varint(&mut out, entries as u64);
        Encoder(out)
    }

    /// Appends one entry.
    #[inline]
    pub fn push(&mut self, word: &[u8], count: u64) {
        put_varint(&mut self.0, word.len() as u64);
        self.0.extend_from_slice(word);
        put_varint(&mut self.0, count);
    }

    /// The blob.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Calls `f` with each entry of a blob, in order. An empty input is an empty blob.
pub fn for_each(blob: &[u8], mut f: impl FnMut(&[u8], u64)) -> Result<(), BadBlob> {
    if blob.is_empty() {
        return Ok(());
    }
    let rest = blob.strip_prefix(MAGIC).ok_or(BadBlob("no RCP1 header"))?;
    let mut r = Reader(rest);
    let n = r.varint()?;
    for _ in 0..n {
        let len = usize::try_from(r.varint()?).map_err(|_| BadBlob("word too long"))?;
        let word = r.take(len)?;
        let count = r.varint()?;
        f(word, count);
    }
    if !r.0.is_empty() {
        return Err(BadBlob("bytes after the last entry"));
    }
    Ok(())
}

/// Decodes a blob into its entries.
pub fn decode(blob: &[u8]) -> Result<Entries, BadBlob> {
    let mut out = Vec::new();
    for_each(blob, |w, n| out.push((w.to_vec(), n)))?;
    Ok(out)
}

/// Merges blobs of one partition into one blob (counts of equal words added), without decoding words
/// into owned memory: the smaller blobs first, the largest (usually the partition's result) last, each
/// step one linear pass. Returns the blob and its number of distinct words.
pub fn merge(blobs: &[&[u8]]) -> Result<(Vec<u8>, u64), BadBlob> {
    let mut order: Vec<&[u8]> = blobs.iter().copied().filter(|b| !b.is_empty()).collect();
    order.sort_by_key(|b| b.len());
    let mut acc: Option<(Vec<u8>, u64)> = None;
    for blob in order {
        acc = Some(match acc {
            None => (blob.to_vec(), Cursor::new(blob)?.remaining),
            Some((merged, _)) => merge_two(&merged, blob)?,
        });
    }
    Ok(acc.unwrap_or_else(|| (encode(std::iter::empty()), 0)))
}

/// One linear merge of two sorted blobs.
fn merge_two(a: &[u8], b: &[u8]) -> Result<(Vec<u8>, u64), BadBlob> {
    let (mut x, mut y) = (Cursor::new(a)?, Cursor::new(b)?);
    let mut body = Vec::with_capacity(a.len() + b.len());
    let mut n = 0u64;
    let (mut ex, mut ey) = (x.next_entry()?, y.next_entry()?);
    loop {
        let (word, count) = match (ex, ey) {
            (Some((wa, ca)), Some((wb, cb))) => match wa.cmp(wb) {
                std::cmp::Ordering::Less => {
                    ex = x.next_entry()?;
                    (wa, ca)
                }
                std::cmp::Ordering::Greater => {
                    ey = y.next_entry()?;
                    (wb, cb)
                }
                std::cmp::Ordering::Equal => {
                    ex = x.next_entry()?;
                    ey = y.next_entry()?;
                    (wa, ca + cb)
                }
            },
            (Some((w, c)), None) => {
                ex = x.next_entry()?;
                (w, c)
            }
            (None, Some((w, c))) => {
                ey = y.next_entry()?;
                (w, c)
            }
            (None, None) => break,
        };
        put_varint(&mut body, word.len() as u64);
        body.extend_from_slice(word);
        put_varint(&mut body, count);
        n += 1;
    }
    let mut out = Vec::with_capacity(body.len() + 14);
    out.extend_from_slice(MAGIC);
    put_varint(&mut out, n);
    out.extend_from_slice(&body);
    Ok((out, n))
}

/// Reads a blob's entries one at a time, borrowing the words.
struct Cursor<'a> {
    reader: Reader<'a>,
    remaining: u64,
}

impl<'a> Cursor<'a> {
    fn new(blob: &'a [u8]) -> Result<Cursor<'a>, BadBlob> {
        if blob.is_empty() {
            return Ok(Cursor {
                reader: Reader(&[]),
                remaining: 0,
            });
        }
        let rest = blob.strip_prefix(MAGIC).ok_or(BadBlob("no RCP1 header"))?;
        let mut reader = Reader(rest);
        let remaining = reader.varint()?;
        Ok(Cursor { reader, remaining })
    }

    fn next_entry(&mut self) -> Result<Option<(&'a [u8], u64)>, BadBlob> {
        if self.remaining == 0 {
            if !self.reader.0.is_empty() {
                return Err(BadBlob("bytes after the last entry"));
            }
            return Ok(None);
        }
        self.remaining -= 1;
        let len = usize::try_from(self.reader.varint()?).map_err(|_| BadBlob("word too long"))?;
        let word = self.reader.take(len)?;
        Ok(Some((word, self.reader.varint()?)))
    }
}

/// The `k` entries of a blob with the highest counts, ties by word bytes ascending, encoded in that
/// order (a top-K blob is not sorted by word).
/// One pass over the blob, words borrowed, a heap of at most `k` kept (a merge calls this on every
/// partition it writes, so it must not decode the whole result again).
pub fn top_of(blob: &[u8], k: usize) -> Result<Vec<u8>, BadBlob> {
    top_and_words(blob, k).map(|(top, _)| top)
}

/// [`top_of`], and the sum of the blob's counts (every word it holds, with repetitions), in the
/// same one pass: a merge records it so that a finished job can be checked to hold every word its
/// commits counted.
pub fn top_and_words(blob: &[u8], k: usize) -> Result<(Vec<u8>, u64), BadBlob> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    // Better = higher count, then smaller word; the heap's top is the worst entry kept.
    type Ranked<'a> = Reverse<(u64, Reverse<&'a [u8]>)>;
    let mut kept: BinaryHeap<Ranked> = BinaryHeap::with_capacity(k + 1);
    let mut cursor = Cursor::new(blob)?;
    let mut words = 0u64;
    while let Some((word, n)) = cursor.next_entry()? {
        words = words.saturating_add(n);
        if k == 0 {
            continue;
        }
        let entry = Reverse((n, Reverse(word)));
        if kept.len() < k {
            kept.push(entry);
        } else if kept.peek().is_some_and(|worst| entry < *worst) {
            kept.pop();
            kept.push(entry);
        }
    }
    let mut top: Vec<(&[u8], u64)> = kept
        .into_iter()
        .map(|Reverse((n, Reverse(w)))| (w, n))
        .collect();
    top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    Ok((encode(top.into_iter()), words))
}

/// Sorts by count descending, then word bytes ascending (the order of every report).
pub fn sort_by_count(entries: &mut Entries) {
    entries.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, BadBlob> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or(BadBlob("cut short"))?;
            self.0 = rest;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(BadBlob("varint too long"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], BadBlob> {
        if self.0.len() < len {
            return Err(BadBlob("cut short"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WordCounts;

    fn blob(entries: &[(&str, u64)]) -> Vec<u8> {
        let mut e: Vec<(&[u8], u64)> = entries.iter().map(|(w, n)| (w.as_bytes(), *n)).collect();
        e.sort_unstable_by(|a, b| a.0.cmp(b.0));
        encode(e.into_iter())
    }

    #[test]
    fn a_blob_decodes_to_what_was_encoded() {
        let b = blob(&[("b", 300), ("a", 1), ("~z", u64::MAX)]);
        assert_eq!(
            decode(&b).expect("valid"),
            vec![
                (b"a".to_vec(), 1),
                (b"b".to_vec(), 300),
                (b"~z".to_vec(), u64::MAX)
            ]
        );
        assert_eq!(decode(&[]).expect("empty"), Vec::new());
        assert!(decode(&b[..b.len() - 1]).is_err());
        assert!(decode(b"XXXX").is_err());
    }

    #[test]
    fn merging_adds_equal_words_and_keeps_order() {
        let (m, distinct) = merge(&[
            &blob(&[("a", 1), ("c", 2)]),
            &blob(&[("b", 5), ("c", 3)]),
            &[],
            &blob(&[("a", 4), ("d", 1)]),
        ])
        .expect("valid");
        assert_eq!(distinct, 4);
        assert_eq!(
            decode(&m).expect("valid"),
            vec![
                (b"a".to_vec(), 5),
                (b"b".to_vec(), 5),
                (b"c".to_vec(), 5),
                (b"d".to_vec(), 1)
            ]
        );
        let top = decode(&top_of(&m, 2).expect("valid")).expect("valid");
        assert_eq!(top, vec![(b"a".to_vec(), 5), (b"b".to_vec(), 5)]);
    }

    #[test]
    fn partitions_split_every_word_to_exactly_one_part() {
        let mut counts = WordCounts::new();
        for w in ["x", "y", "zz", "x", "hello", "world"] {
            counts.add(w.as_bytes());
        }
        let parts = split_by_partition(counts.iter(), 4);
        let total: u64 = parts.iter().flatten().map(|(_, n)| n).sum();
        assert_eq!(total, 6);
        for (p, part) in parts.iter().enumerate() {
            assert!(part.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(part.iter().all(|(w, _)| partition_of(w, 4) == p as u32));
        }
        assert_eq!(partition_of(b"anything", 1), 0);
    }
}
