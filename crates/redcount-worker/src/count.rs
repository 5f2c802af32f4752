//! Counting one task: read its byte ranges, pick the text out (CSV column or plain), tokenize, add up.

use std::collections::HashSet;

use anyhow::Context;
use redcount_count::{Tokenizer, WordCounts};
use redcount_input::compressed::{decompress_all, for_each_block, Compression};
use redcount_input::object::{is_object, read_in_background, RangeRequest, Reads};
use redcount_input::read::{
    check_word_lengths, check_word_lengths_in, looks_binary, read_range, BINARY_PROBE,
};
use redcount_input::{csv_text, split::csv_header, InputError};
use redcount_protocol::{BinaryFiles, Format, JobSpec, Piece};

/// The bytes of a task's ranges, by piece: those in an object store all read at once, concurrently
/// (each GET costs a round trip: read one at a time, a packed task of small objects would wait on
/// the network far longer than it counts), and started before the task is counted, while the one
/// before it is ([`PieceBytes::start`]); local ones one at a time as they are counted, into a
/// buffer reused between tasks.
pub(crate) struct PieceBytes {
    /// The object reads in flight, and the piece index of each.
    reads: Option<(Vec<usize>, Reads)>,
    /// Each piece's bytes once the reads are in (None for a local piece).
    objects: Vec<Option<Result<Vec<u8>, InputError>>>,
}

impl PieceBytes {
    /// Starts reading every object range of `pieces` in the background.
    pub(crate) fn start(pieces: &[Piece]) -> PieceBytes {
        let (indexes, requests): (Vec<usize>, Vec<RangeRequest>) = pieces
            .iter()
            .enumerate()
            .filter(|(_, p)| is_object(&p.path))
            .map(|(i, p)| {
                let request = RangeRequest {
                    url: p.path.clone(),
                    version: p.version.clone(),
                    range: p.start..p.end,
                };
                (i, request)
            })
            .unzip();
        let reads = (!requests.is_empty()).then(|| (indexes, read_in_background(requests)));
        PieceBytes {
            reads,
            objects: pieces.iter().map(|_| None).collect(),
        }
    }

    /// Counts piece `index` (`piece`): its fetched bytes, or the local file's range read into `buf`;
    /// one that looks binary is an error unless the job counts `binary` inputs.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn count(
        &mut self,
        index: usize,
        piece: &Piece,
        tokenizer: &Tokenizer,
        csv_column: &str,
        binary: BinaryFiles,
        buf: &mut Vec<u8>,
        counts: &mut WordCounts,
    ) -> Result<u64, InputError> {
        if let Some((indexes, reads)) = self.reads.take() {
            for (i, bytes) in indexes.into_iter().zip(reads.wait()) {
                self.objects[i] = Some(bytes);
            }
        }
        if let Some(compression) = Compression::of(&piece.path) {
            let compressed = match self.objects.get_mut(index).and_then(Option::take) {
                Some(fetched) => fetched?,
                None => {
                    let mut whole = Vec::new();
                    let version = piece.version.as_deref();
                    read_range(&piece.path, version, piece.start, piece.end, &mut whole)?;
                    whole
                }
            };
            return count_compressed(
                piece,
                compression,
                &compressed,
                tokenizer,
                csv_column,
                binary,
                counts,
            );
        }
        // A range longer than the longest word can hold one (its planner found no whitespace to
        // cut at): checked before it is counted, in bounded memory for a file.
        let data = match self.objects.get_mut(index).and_then(Option::take) {
            Some(fetched) => {
                *buf = fetched?;
                check_word_lengths_in(&piece.path, buf, piece.start)?;
                buf
            }
            None => {
                check_word_lengths(&piece.path, piece.start, piece.end)?;
                read_range(
                    &piece.path,
                    piece.version.as_deref(),
                    piece.start,
                    piece.end,
                    buf,
                )?;
                buf
            }
        };
        if binary == BinaryFiles::Skip
            && looks_binary(&piece.path, piece.version.as_deref(), piece.start, data)?
        {
            return Err(InputError::Binary {
                path: piece.path.clone(),
            });
        }
        count_bytes(piece, data, tokenizer, csv_column, counts)
    }
}

/// Counts a compressed input (one whole piece, never split): text a decompressed block at a
/// time into its own counts (a stream can turn out broken halfway: nothing of it is kept then), a
/// CSV decompressed whole and parsed as any other. Its binary test is on the decompressed head.
fn count_compressed(
    piece: &Piece,
    compression: Compression,
    compressed: &[u8],
    tokenizer: &Tokenizer,
    csv_column: &str,
    binary: BinaryFiles,
    counts: &mut WordCounts,
) -> Result<u64, InputError> {
    let is_binary = |head: &[u8]| {
        binary == BinaryFiles::Skip && head[..head.len().min(BINARY_PROBE as usize)].contains(&0)
    };
    let binary_error = || InputError::Binary {
        path: piece.path.clone(),
    };
    if piece.format == Format::Csv {
        let text = decompress_all(&piece.path, compression, compressed)?;
        if is_binary(&text) {
            return Err(binary_error());
        }
        return count_bytes(piece, &text, tokenizer, csv_column, counts);
    }
    let mut own = tokenizer.new_counts();
    let mut first = true;
    let mut looks_binary = false;
    for_each_block(&piece.path, compression, compressed, |block| {
        if std::mem::take(&mut first) && is_binary(block) {
            looks_binary = true;
        }
        if !looks_binary {
            tokenizer.count(block, &mut own);
        }
    })?;
    if looks_binary {
        return Err(binary_error());
    }
    let before = counts.total();
    counts.merge(&own);
    Ok(counts.total() - before)
}

/// Counts the words of one range of a task (its bytes `buf`) into `counts` and returns how many it
/// had. On error `counts` is unchanged.
fn count_bytes(
    task: &Piece,
    buf: &[u8],
    tokenizer: &Tokenizer,
    csv_column: &str,
    counts: &mut WordCounts,
) -> Result<u64, InputError> {
    let before = counts.total();
    match task.format {
        // Text cannot fail once read: count straight into the batch, no per-task map to merge.
        Format::Text => tokenizer.count(buf, counts),
        // CSV can turn out malformed halfway: count aside and merge only a clean parse. A piece after
        // the first gets the file's header record in front, so columns are found by name.
        Format::Csv => {
            let mut own = tokenizer.new_counts();
            let mut count_fields = |data: &[u8]| {
                csv_text::for_each_field(&task.path, data, csv_column, |field| {
                    tokenizer.count(field, &mut own)
                })
            };
            if task.start == 0 {
                count_fields(buf)?;
            } else {
                let mut with_header = csv_header(&task.path, task.version.as_deref(), task.start)?;
                with_header.extend_from_slice(buf);
                count_fields(&with_header)?;
            }
            counts.merge(&own);
        }
    }
    Ok(counts.total() - before)
}

/// The tokenizer a job's spec asks for, with its dictionary (one word per line or per token): the
/// text the job was created with, or, for a job made by a version that did not keep it, the file.
pub(crate) fn build_tokenizer(spec: &JobSpec, kept: Option<Vec<u8>>) -> anyhow::Result<Tokenizer> {
    let dictionary = match &spec.dictionary {
        None => None,
        Some(path) => {
            let text = match kept {
                Some(text) => text,
                None => std::fs::read(path)
                    .with_context(|| format!("cannot read the dictionary {}", path.display()))?,
            };
            let mut words = HashSet::new();
            redcount_count::for_each_token(&text, |w| {
                let mut w = w.to_vec();
                if spec.lowercase {
                    w.make_ascii_lowercase();
                }
                words.insert(w);
            });
            Some(words)
        }
    };
    Ok(Tokenizer::new(spec.tokenizer, spec.lowercase, dictionary))
}
