//! Reporting a finished job: the top-K table, the one-line summary, `--out` and `--json`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use redcount_protocol::{escape_bytes, DeadTask, Status};

use crate::embedded::EmbeddedRedis;
use crate::session::{JobResult, Session};
use crate::JobOptions;

/// Writes `--out` if asked for and sums the job up; `files` is how many files it counted (a
/// stream: the files it injected, its inputs cycled through).
pub fn report(
    session: &Session,
    options: &JobOptions,
    result: JobResult,
    files: u64,
) -> anyhow::Result<Summary> {
    if let (Some(out), Some(all)) = (&options.out, &result.all) {
        write_out_file(out, at_least(all, options.min_count))?;
    }
    let mut summary = Summary::new(
        &session.name,
        files,
        &result.status,
        session.started.elapsed().as_secs_f64(),
        result.failed,
        &result.top,
    );
    summary.recomputed_after_rollback = session.recomputed_after_rollback();
    summary.recreated = session.recreated();
    summary.redis_restarts = session
        .server
        .as_ref()
        .map(EmbeddedRedis::restarts)
        .unwrap_or(0);
    Ok(summary)
}

/// Everything a finished run reports (also its `--json` form).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The job's name.
    pub job: String,
    /// Input files.
    pub files: u64,
    /// Tasks they were planned into.
    pub tasks: u64,
    /// Input bytes.
    pub bytes: u64,
    /// Words counted (with repetitions).
    pub words: u64,
    /// Distinct words.
    pub distinct_words: u64,
    /// Wall time from opening the job to its result.
    pub wall_seconds: f64,
    /// Input MB per second of wall time.
    pub mb_per_second: f64,
    /// Tasks computed more than once.
    pub recomputed: u64,
    /// Lease expiries that handed a task to another worker.
    pub redelivered: u64,
    /// Commits refused because the task was already committed.
    pub duplicates: u64,
    /// Tasks copied to a second worker because their first straggled.
    pub speculated: u64,
    /// Commits applied.
    pub commits: u64,
    /// Word increments applied in Redis.
    pub increments: u64,
    /// Partition merges workers committed.
    pub merges: u64,
    /// Inputs that could not be processed (files or objects, each counted once).
    pub inputs_failed: u64,
    /// Bytes of the input not counted: the ranges of the failed records, each once.
    pub bytes_not_counted: u64,
    /// Tasks committed, rolled back and committed again.
    pub recomputed_after_rollback: u64,
    /// Times the job was run again from the start because Redis had lost it entirely.
    pub recreated: u64,
    /// Restarts of the private Redis (crashes, `--chaos-redis`).
    pub redis_restarts: u64,
    /// The inputs given up, with their errors.
    pub failed: Vec<DeadTask>,
    /// How `top`'s words are written: [`WORD_ESCAPES`].
    pub word_escapes: &'static str,
    /// The most frequent words.
    pub top: Vec<TopWord>,
}

/// How words that are not plain text are written in JSON (and in every table a person reads).
pub const WORD_ESCAPES: &str =
    "UTF-8 text as it is; \\\\ is a backslash; \\xNN is a byte that is not valid UTF-8, or a control byte";

/// One row of the top-K table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopWord {
    /// The word, escaped as [`escape_bytes`] says (the JSON's `word_escapes` says it too).
    pub word: String,
    /// Its bytes, as counted.
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// How often it occurs.
    pub count: u64,
}

impl Summary {
    /// Builds the summary from the final status.
    pub fn new(
        job: &str,
        files: u64,
        status: &Status,
        wall_seconds: f64,
        failed: Vec<DeadTask>,
        top: &[(Vec<u8>, u64)],
    ) -> Summary {
        let mut failed_paths: Vec<&str> = failed.iter().map(|d| d.path.as_str()).collect();
        failed_paths.sort_unstable();
        failed_paths.dedup();
        let mut ranges: Vec<(&str, u64, u64)> = failed
            .iter()
            .map(|d| (d.path.as_str(), d.start, d.end))
            .collect();
        ranges.sort_unstable();
        ranges.dedup();
        let bytes_not_counted = ranges.iter().map(|(_, s, e)| e.saturating_sub(*s)).sum();
        Summary {
            job: job.to_string(),
            files,
            tasks: status.tasks,
            bytes: status.bytes,
            words: status.words,
            distinct_words: status.distinct_words,
            wall_seconds,
            mb_per_second: status.bytes as f64 / 1e6 / wall_seconds.max(1e-9),
            recomputed: status.recomputed,
            redelivered: status.redelivered,
            duplicates: status.duplicates,
            speculated: status.speculated,
            commits: status.commits,
            increments: status.increments,
            merges: status.merges,
            inputs_failed: failed_paths.len() as u64,
            bytes_not_counted,
            recomputed_after_rollback: 0,
            recreated: 0,
            redis_restarts: 0,
            failed,
            word_escapes: WORD_ESCAPES,
            top: top
                .iter()
                .map(|(w, n)| TopWord {
                    word: escape_bytes(w),
                    bytes: w.clone(),
                    count: *n,
                })
                .collect(),
        }
    }

    /// The aligned table, the summary line and the failed inputs, as a person reads them.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        if !self.top.is_empty() {
            let count_width = self
                .top
                .iter()
                .map(|t| t.count.to_string().len())
                .max()
                .unwrap_or(5)
                .max(5);
            let rank_width = self.top.len().to_string().len().max(4);
            writeln!(
                out,
                "{:>rank_width$}  {:>count_width$}  word",
                "rank", "count"
            )?;
            for (i, t) in self.top.iter().enumerate() {
                writeln!(
                    out,
                    "{:>rank_width$}  {:>count_width$}  {}",
                    i + 1,
                    t.count,
                    display_word(&t.bytes)
                )?;
            }
            writeln!(out)?;
        }
        let not_counted = if self.inputs_failed > 0 {
            format!(
                " ({} of the input not counted)",
                human_bytes(self.bytes_not_counted)
            )
        } else {
            String::new()
        };
        writeln!(
            out,
            "{} files, {}, {} words, {} distinct, in {:.2} s ({:.1} MB/s); {} inputs failed{}",
            self.files,
            human_bytes(self.bytes),
            self.words,
            self.distinct_words,
            self.wall_seconds,
            self.mb_per_second,
            self.inputs_failed,
            not_counted
        )?;
        // One vocabulary for work done twice: re-delivered (a lease ran out), speculative copies (a
        // straggler's task copied), rolled back (a commit Redis lost, redone). `recomputed` in the
        // JSON counts the tasks committed on a delivery after their first, whichever the reason.
        if self.redelivered + self.speculated + self.recomputed_after_rollback > 0 {
            writeln!(
                out,
                "work redone: {} tasks re-delivered after a lease ran out, {} speculative copies, {} commits rolled back and redone",
                self.redelivered, self.speculated, self.recomputed_after_rollback
            )?;
        }
        if self.redis_restarts + self.recreated > 0 {
            writeln!(
                out,
                "redis: {} restarts; job run again from the start {} times",
                self.redis_restarts, self.recreated
            )?;
        }
        for d in &self.failed {
            writeln!(
                out,
                "failed: {} bytes {}..{} (task {}, {} attempts): {}",
                d.path, d.start, d.end, d.task, d.attempts, d.error
            )?;
        }
        Ok(())
    }
}

/// The longest word a terminal table shows whole (in characters, escapes included); longer ones
/// are cut there and their length in bytes is added, so a 40 MB token is one short line.
pub const SHOWN_WORD_CHARS: usize = 60;

/// A word for a terminal: [`escape_bytes`] (control bytes and bytes that are not UTF-8 as `\xNN`,
/// a backslash as `\\`, so nothing reaches the terminal as a control sequence), cut to
/// [`SHOWN_WORD_CHARS`]. `--out` keeps the raw bytes, `--json` the whole escaped word.
pub fn display_word(word: &[u8]) -> String {
    let text = escape_bytes(word);
    match text.char_indices().nth(SHOWN_WORD_CHARS) {
        None => text,
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], word.len()),
    }
}

/// `12.3 MB` style sizes (decimal units, like MB/s).
pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// Writes every word as `word<TAB>count` lines (raw bytes), already sorted by count descending then
/// word ascending: into a new file beside `path`, renamed over it once whole, so a crash or a
/// full disk never leaves half a result under its name.
pub fn write_out_file(path: &Path, counts: &[(Vec<u8>, u64)]) -> anyhow::Result<()> {
    let file = tempfile::NamedTempFile::new_in(output_dir(path))
        .with_context(|| format!("cannot create --out file {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    write_counts(&mut w, counts)
        .and_then(|()| w.flush())
        .with_context(|| format!("cannot write --out file {}", path.display()))?;
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write --out file {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("cannot write --out file {}", path.display()))?;
    Ok(())
}

/// The directory a file named `path` goes into.
fn output_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Checks, before any work, that each `(flag, path)` can be written: its directory exists and
/// takes a new file (a job's result is not worth computing when it cannot be kept).
pub fn check_writable(outputs: &[(&str, &Path)]) -> anyhow::Result<()> {
    for (flag, path) in outputs {
        let dir = output_dir(path);
        if path.is_dir() {
            anyhow::bail!("{flag} {}: is a directory; name a file", path.display());
        }
        tempfile::NamedTempFile::new_in(dir).with_context(|| {
            format!(
                "{flag} {}: cannot write into {} (does it exist, and may you write there?)",
                path.display(),
                dir.display()
            )
        })?;
    }
    Ok(())
}

/// The words of `counts` (sorted by count, descending) seen at least `min_count` times.
pub fn at_least(counts: &[(Vec<u8>, u64)], min_count: u64) -> &[(Vec<u8>, u64)] {
    &counts[..counts.partition_point(|(_, n)| *n >= min_count)]
}

/// Every (word, count) as `word<TAB>count` lines, in the order given.
pub fn write_counts(w: &mut impl Write, counts: &[(Vec<u8>, u64)]) -> std::io::Result<()> {
    for (word, n) in counts {
        w.write_all(word)?;
        writeln!(w, "\t{n}")?;
    }
    Ok(())
}
