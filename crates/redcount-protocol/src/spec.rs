//! A job's spec: the settings every worker of the job must share. It is written once by `rc_create`
//! as `cfg.*` fields of the job's meta hash and read back by each worker when it joins; this module is
//! the one place that knows those field names and how each value is written.

use std::collections::HashMap;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

pub use redcount_count::TokenizerKind;

/// Where a job's counts are added up (`--aggregate-in`, `cfg.aggregation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Aggregation {
    /// Commits store partial counts as compact blobs per partition, and workers merge them: Redis
    /// does O(bytes) per commit and nothing per word.
    #[default]
    Workers,
    /// Commits add every word to the sorted set `rc:{J}:counts` with ZINCRBY (the course's lab
    /// design: Redis pays per distinct word of every commit).
    Redis,
}

impl Aggregation {
    /// The name in the job's spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Workers => "workers",
            Aggregation::Redis => "redis",
        }
    }
}

/// What a job does with an input that looks binary (a NUL byte in its first 8 KiB, as grep and
/// ripgrep decide): `--binary`, `cfg.binary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BinaryFiles {
    /// Not counted, and reported by name with the reason (exit status 3).
    #[default]
    Skip,
    /// Counted as any other input.
    Count,
}

impl BinaryFiles {
    /// The name in the job's spec.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryFiles::Skip => "skip",
            BinaryFiles::Count => "count",
        }
    }
}

/// Partitions of a job's counts when it sets none: merges of different partitions run in parallel,
/// and one partition is what a merging worker holds in memory.
pub const DEFAULT_PARTITIONS: Partitions = Partitions(16);

/// How many partitions a job's counts are cut into: 1 to [`Partitions::MAX`], checked where the
/// number comes in (the command line refuses others, a spec read back from Redis is brought into
/// range), so nothing that uses it clamps it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partitions(u32);

impl Partitions {
    /// The most partitions a job may have (each is a key, a blob and a merge lease).
    pub const MAX: u32 = 1024;

    /// `n` partitions, or why not.
    pub fn new(n: u32) -> Result<Partitions, String> {
        if (1..=Self::MAX).contains(&n) {
            Ok(Partitions(n))
        } else {
            Err(format!(
                "{n} partitions: use 1 to {} (16 by default)",
                Self::MAX
            ))
        }
    }

    /// `n` brought into 1..=[`Partitions::MAX`].
    pub fn clamped(n: u32) -> Partitions {
        Partitions(n.clamp(1, Self::MAX))
    }

    /// The number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for Partitions {
    fn default() -> Partitions {
        DEFAULT_PARTITIONS
    }
}

impl std::fmt::Display for Partitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Partitions {
    type Err = String;

    fn from_str(s: &str) -> Result<Partitions, String> {
        let n = s
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("'{s}' is not a number of partitions (1 to {})", Self::MAX))?;
        Partitions::new(n)
    }
}

/// The settings of a job that every worker must share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// How words are cut out of text.
    pub tokenizer: TokenizerKind,
    /// Lowercase ASCII letters before counting.
    pub lowercase: bool,
    /// Keep only the words listed in this file (its text, read by the driver when the job starts,
    /// travels in the job: see [`crate::Job::create_with_dictionary`]).
    pub dictionary: Option<PathBuf>,
    /// Column counted in CSV inputs.
    pub csv_column: String,
    /// Lease of every task, for workers that do not set their own.
    pub lease: Lease,
    /// Deliveries of a task before it is given up, for workers that do not set their own.
    pub max_attempts: u32,
    /// Replicas that must have a commit (`WAIT`) before a worker counts it done.
    pub sync_replicas: u32,
    /// Where counts are added up.
    pub aggregation: Aggregation,
    /// Partitions of the counts (with `Aggregation::Workers`).
    pub partitions: Partitions,
    /// How long the job is kept once finished before `jobs prune` (and every new job's driver)
    /// removes it; None: until removed by hand.
    pub keep: Option<Duration>,
    /// Commit records (`done`) kept in Redis, the newest; older ones are trimmed by the commits
    /// themselves, so a stream that runs for days holds bounded memory. 0 keeps every record.
    pub history: u64,
    /// Inputs that look binary: skipped (and reported) or counted.
    pub binary: BinaryFiles,
}

/// Commit records a job keeps when it sets no `history`: about 15 MB of Redis, and the last
/// 5.5 minutes of a stream at 300 files/s.
pub const DEFAULT_HISTORY: u64 = 100_000;

/// Lease of a task when a job sets none.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);
/// The shortest lease a job or worker may ask for: renewals go every quarter of a lease, so one
/// of 250 ms leaves a renewal about 60 ms to reach Redis before a live worker would look dead.
pub const MIN_LEASE: Duration = Duration::from_millis(250);
/// Deliveries of a task before it is given up, when a job sets none.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// How long a task may go without a commit or renewal before another worker takes it over: at
/// least [`MIN_LEASE`], checked where it comes in (the command line), so nothing that uses it
/// checks it again. The job's lease is its spec's; a worker may ask for its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lease(Duration);

impl Lease {
    /// A lease of `lease`, or why not (shorter than [`MIN_LEASE`]).
    pub fn new(lease: Duration) -> Result<Lease, String> {
        if lease < MIN_LEASE {
            return Err(format!(
                "a lease of {} is too short: a worker renews its leases every quarter of a \
                 lease, and a renewal slower than that (a busy Redis, a slow link) would take a \
                 live worker's tasks away and count it dead; use at least {} ms",
                humantime::format_duration(lease),
                MIN_LEASE.as_millis()
            ));
        }
        Ok(Lease(lease))
    }

    /// The lease a job's spec in Redis says, as it is: whatever made the job checked it.
    pub(crate) fn stored(ms: u64) -> Lease {
        Lease(Duration::from_millis(ms.max(1)))
    }

    /// Its length.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl Default for Lease {
    fn default() -> Lease {
        Lease(DEFAULT_LEASE)
    }
}

impl std::fmt::Display for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.subsec_millis() == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            write!(f, "{}ms", self.0.as_millis())
        }
    }
}

impl std::str::FromStr for Lease {
    type Err = String;

    /// `5s`, `500ms`, `1m 30s`, or a number of milliseconds.
    fn from_str(s: &str) -> Result<Lease, String> {
        let lease = match s.trim().parse::<u64>() {
            Ok(ms) => Duration::from_millis(ms),
            Err(_) => humantime::parse_duration(s.trim())
                .map_err(|e| format!("'{s}' is not a duration like 500ms or 3s: {e}"))?,
        };
        Lease::new(lease)
    }
}

impl Default for JobSpec {
    fn default() -> JobSpec {
        JobSpec {
            tokenizer: TokenizerKind::Whitespace,
            lowercase: false,
            dictionary: None,
            csv_column: "text".into(),
            lease: Lease::default(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            sync_replicas: 0,
            aggregation: Aggregation::Workers,
            partitions: DEFAULT_PARTITIONS,
            keep: None,
            history: DEFAULT_HISTORY,
            binary: BinaryFiles::Skip,
        }
    }
}

/// Workers heard from within this window of a lease count as live: three renewals missed.
pub const fn live_window(lease: Duration) -> Duration {
    Duration::from_nanos(3 * lease.as_nanos() as u64)
}

/// The live window of a reader that does not know a job's lease (`status`, `jobs`, the
/// dashboard, retention): the default lease's.
pub const READER_LIVE_WINDOW: Duration = live_window(DEFAULT_LEASE);

const TOKENIZER: &str = "cfg.tokenizer";
const LOWERCASE: &str = "cfg.lowercase";
const DICTIONARY: &str = "cfg.dictionary";
const CSV_COLUMN: &str = "cfg.csv_column";
const LEASE_MS: &str = "cfg.lease_ms";
const MAX_ATTEMPTS: &str = "cfg.max_attempts";
const SYNC_REPLICAS: &str = "cfg.sync_replicas";
const AGGREGATION: &str = "cfg.aggregation";
const PARTITIONS: &str = "cfg.partitions";
pub(crate) const KEEP_MS: &str = "cfg.keep_ms";
const HISTORY: &str = "cfg.history";
const BINARY: &str = "cfg.binary";

/// The meta-hash field holding the text of the job's dictionary (not a `cfg.*` field: it can be
/// large, and only a worker that builds its tokenizer reads it).
pub(crate) const DICTIONARY_TEXT: &str = "dictionary";

/// The meta-hash fields of a spec, in the order [`JobSpec::to_fields`] writes them.
pub(crate) const SPEC_FIELDS: [&str; 12] = [
    TOKENIZER,
    LOWERCASE,
    DICTIONARY,
    CSV_COLUMN,
    LEASE_MS,
    MAX_ATTEMPTS,
    SYNC_REPLICAS,
    AGGREGATION,
    PARTITIONS,
    KEEP_MS,
    HISTORY,
    BINARY,
];

impl JobSpec {
    /// The spec as meta-hash fields and values.
    pub(crate) fn to_fields(&self) -> [(&'static str, Vec<u8>); 12] {
        let num = |n: u64| n.to_string().into_bytes();
        [
            (TOKENIZER, self.tokenizer.as_str().as_bytes().to_vec()),
            (LOWERCASE, num(u64::from(self.lowercase))),
            (
                DICTIONARY,
                self.dictionary
                    .as_ref()
                    .map(|p| p.as_os_str().as_bytes().to_vec())
                    .unwrap_or_default(),
            ),
            (CSV_COLUMN, self.csv_column.clone().into_bytes()),
            (LEASE_MS, num(millis(self.lease.get()))),
            (MAX_ATTEMPTS, num(u64::from(self.max_attempts))),
            (SYNC_REPLICAS, num(u64::from(self.sync_replicas))),
            (AGGREGATION, self.aggregation.as_str().as_bytes().to_vec()),
            (PARTITIONS, num(u64::from(self.partitions.get()))),
            (
                KEEP_MS,
                self.keep.map(|d| num(millis(d))).unwrap_or_default(),
            ),
            (HISTORY, num(self.history)),
            (BINARY, self.binary.as_str().as_bytes().to_vec()),
        ]
    }

    /// The spec from meta-hash fields (missing numbers take their defaults, as a job written by an
    /// older version has them); `Err` names a value this version cannot read.
    pub(crate) fn from_fields(fields: &HashMap<&str, Vec<u8>>) -> Result<JobSpec, String> {
        let text = |field: &str| {
            String::from_utf8_lossy(fields.get(field).map(Vec::as_slice).unwrap_or(b""))
                .into_owned()
        };
        let number = |field: &str, default: u64| -> Result<u64, String> {
            match text(field).as_str() {
                "" => Ok(default),
                t => t
                    .parse()
                    .map_err(|_| format!("{field} is '{t}', not a number")),
            }
        };
        let tokenizer = text(TOKENIZER);
        let small = |field: &str, default: u32| -> Result<u32, String> {
            u32::try_from(number(field, u64::from(default))?)
                .map_err(|_| format!("{field} is too large"))
        };
        Ok(JobSpec {
            tokenizer: TokenizerKind::parse(&tokenizer)
                .ok_or_else(|| format!("unknown tokenizer '{tokenizer}' in {TOKENIZER}"))?,
            lowercase: text(LOWERCASE) == "1",
            dictionary: fields
                .get(DICTIONARY)
                .filter(|p| !p.is_empty())
                .map(|p| PathBuf::from(std::ffi::OsString::from_vec(p.clone()))),
            csv_column: text(CSV_COLUMN),
            lease: Lease::stored(number(LEASE_MS, millis(DEFAULT_LEASE))?),
            max_attempts: small(MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS)?,
            sync_replicas: small(SYNC_REPLICAS, 0)?,
            // A job written before partials existed was counted with ZINCRBY.
            aggregation: match text(AGGREGATION).as_str() {
                "workers" => Aggregation::Workers,
                "redis" | "" => Aggregation::Redis,
                other => return Err(format!("unknown aggregation '{other}' in {AGGREGATION}")),
            },
            partitions: Partitions::clamped(small(PARTITIONS, 1)?),
            keep: match text(KEEP_MS).as_str() {
                "" => None,
                _ => Some(Duration::from_millis(number(KEEP_MS, 0)?)),
            },
            // A job written before trimming kept every record.
            history: number(HISTORY, 0)?,
            // A job written before binary inputs were told apart counted them.
            binary: match text(BINARY).as_str() {
                "skip" => BinaryFiles::Skip,
                "count" | "" => BinaryFiles::Count,
                other => return Err(format!("unknown binary policy '{other}' in {BINARY}")),
            },
        })
    }
}

/// How a batch job's inputs were cut into tasks, kept in its meta hash (`plan.*`) when it is made:
/// running the same `run` again plans the same tasks from it (same split size, same packing) and
/// checks them by `digest` before it resumes the job, so a resumed job counts every input once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanFacts {
    /// The split (and packing) size of the plan, in bytes.
    pub split_bytes: u64,
    /// Small inputs packed together (`run` without `--no-pack`).
    pub packed: bool,
    /// Tasks planned.
    pub tasks: u64,
    /// Files planned.
    pub files: u64,
    /// Bytes planned.
    pub bytes: u64,
    /// A digest of every task (its number, ranges, format and the version of its inputs).
    pub digest: String,
}

/// The meta-hash fields of a [`PlanFacts`], in the order [`PlanFacts::to_fields`] writes them.
pub(crate) const PLAN_FIELDS: [&str; 6] = [
    "plan.split_bytes",
    "plan.packed",
    "plan.tasks",
    "plan.files",
    "plan.bytes",
    "plan.digest",
];

impl PlanFacts {
    /// The plan as meta-hash fields and values.
    pub(crate) fn to_fields(&self) -> [(&'static str, Vec<u8>); 6] {
        let num = |n: u64| n.to_string().into_bytes();
        let [split, packed, tasks, files, bytes, digest] = PLAN_FIELDS;
        [
            (split, num(self.split_bytes)),
            (packed, num(u64::from(self.packed))),
            (tasks, num(self.tasks)),
            (files, num(self.files)),
            (bytes, num(self.bytes)),
            (digest, self.digest.clone().into_bytes()),
        ]
    }

    /// The plan from its fields' values in [`PLAN_FIELDS`] order; None when the job has none (a
    /// stream, or a job made by an older version).
    pub(crate) fn from_values(values: &[Option<Vec<u8>>]) -> Option<PlanFacts> {
        let text = |i: usize| -> Option<String> {
            values
                .get(i)?
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let num = |i: usize| -> Option<u64> { text(i)?.parse().ok() };
        Some(PlanFacts {
            split_bytes: num(0)?,
            packed: num(1)? == 1,
            tasks: num(2)?,
            files: num(3)?,
            bytes: num(4)?,
            digest: text(5)?,
        })
    }
}

impl JobSpec {
    /// The settings in which `self` (a job's) and `asked` (a new run's) differ, each as the flag
    /// and both values, for a message that says what to change: e.g. `--lease 5s (this run: 2s)`.
    pub fn differences(&self, asked: &JobSpec) -> Vec<String> {
        let mut out = Vec::new();
        let mut compare = |flag: &str, job: String, run: String| {
            if job != run {
                out.push(format!("{flag} {job} (this run: {run})"));
            }
        };
        let on = |b: bool| if b { "on" } else { "off" }.to_string();
        let ms = |d: Duration| format!("{}ms", millis(d));
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or_else(|| "none".to_string(), |p| p.display().to_string())
        };
        compare(
            "--tokenizer",
            self.tokenizer.as_str().into(),
            asked.tokenizer.as_str().into(),
        );
        compare("--lowercase", on(self.lowercase), on(asked.lowercase));
        compare(
            "--dictionary",
            path(&self.dictionary),
            path(&asked.dictionary),
        );
        compare(
            "--csv-column",
            self.csv_column.clone(),
            asked.csv_column.clone(),
        );
        compare("--lease", ms(self.lease.get()), ms(asked.lease.get()));
        compare(
            "--max-attempts",
            self.max_attempts.to_string(),
            asked.max_attempts.to_string(),
        );
        compare(
            "--sync-replicas",
            self.sync_replicas.to_string(),
            asked.sync_replicas.to_string(),
        );
        compare(
            "--aggregate-in",
            self.aggregation.as_str().into(),
            asked.aggregation.as_str().into(),
        );
        compare(
            "--partitions",
            self.partitions.to_string(),
            asked.partitions.to_string(),
        );
        compare(
            "--keep",
            self.keep.map_or_else(|| "none".into(), ms),
            asked.keep.map_or_else(|| "none".into(), ms),
        );
        compare(
            "--history",
            self.history.to_string(),
            asked.history.to_string(),
        );
        compare(
            "--binary",
            self.binary.as_str().into(),
            asked.binary.as_str().into(),
        );
        out
    }
}

/// A duration as the whole milliseconds the library takes (at least 1: a zero lease is no lease).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(spec: &JobSpec) -> JobSpec {
        let fields: HashMap<&str, Vec<u8>> = spec.to_fields().into_iter().collect();
        JobSpec::from_fields(&fields).expect("readable")
    }

    #[test]
    fn a_spec_reads_back_as_it_was_written() {
        let default = JobSpec::default();
        assert_eq!(round_trip(&default), default);
        let every = JobSpec {
            tokenizer: TokenizerKind::Letters,
            lowercase: true,
            dictionary: Some(PathBuf::from("/tmp/words list.txt")),
            csv_column: "body".into(),
            lease: Lease::stored(1234),
            max_attempts: 9,
            sync_replicas: 2,
            aggregation: Aggregation::Redis,
            partitions: Partitions::clamped(7),
            keep: Some(Duration::from_secs(3600)),
            history: 5,
            binary: BinaryFiles::Count,
        };
        assert_eq!(round_trip(&every), every);
        let names: Vec<&str> = every.to_fields().iter().map(|(f, _)| *f).collect();
        assert_eq!(names, SPEC_FIELDS);
    }

    #[test]
    fn a_lease_is_at_least_the_floor_and_reads_as_written() {
        assert_eq!("5s".parse::<Lease>(), Ok(Lease::default()));
        assert_eq!(
            "1500".parse::<Lease>().map(Lease::get),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(
            "1m 30s".parse::<Lease>().map(Lease::get),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(Lease::default().to_string(), "5s");
        assert_eq!(
            "750ms".parse::<Lease>().map(|l| l.to_string()),
            Ok("750ms".into())
        );
        let short = "100ms".parse::<Lease>().expect_err("below the floor");
        assert!(short.contains("at least 250 ms"), "{short}");
        assert!("soon".parse::<Lease>().is_err());
    }

    #[test]
    fn partitions_are_one_to_the_most_and_out_of_range_says_the_range() {
        assert_eq!("16".parse::<Partitions>(), Ok(DEFAULT_PARTITIONS));
        assert_eq!(Partitions::default().get(), 16);
        assert_eq!("1024".parse::<Partitions>().map(Partitions::get), Ok(1024));
        for bad in ["0", "1025", "-1", "many"] {
            let err = bad.parse::<Partitions>().expect_err(bad);
            assert!(err.contains("1 to 1024"), "{err}");
        }
        assert_eq!(Partitions::clamped(0).get(), 1);
        assert_eq!(Partitions::clamped(5000).get(), Partitions::MAX);
    }

    #[test]
    fn a_reader_counts_workers_live_for_three_default_leases() {
        assert_eq!(READER_LIVE_WINDOW, Duration::from_secs(15));
        assert_eq!(
            live_window(Duration::from_millis(250)),
            Duration::from_millis(750)
        );
    }

    #[test]
    fn differences_name_the_flag_and_both_values() {
        let job = JobSpec::default();
        assert!(job.differences(&job.clone()).is_empty());
        let asked = JobSpec {
            lowercase: true,
            lease: Lease::stored(2000),
            ..JobSpec::default()
        };
        assert_eq!(
            job.differences(&asked),
            [
                "--lowercase off (this run: on)",
                "--lease 5000ms (this run: 2000ms)"
            ]
        );
    }

    #[test]
    fn a_plan_reads_back_as_it_was_written() {
        let plan = PlanFacts {
            split_bytes: 1 << 20,
            packed: true,
            tasks: 7,
            files: 300,
            bytes: 12345,
            digest: "ab12".into(),
        };
        let values: Vec<Option<Vec<u8>>> =
            plan.to_fields().into_iter().map(|(_, v)| Some(v)).collect();
        assert_eq!(PlanFacts::from_values(&values), Some(plan.clone()));
        let names: Vec<&str> = plan.to_fields().iter().map(|(f, _)| *f).collect();
        assert_eq!(names, PLAN_FIELDS);
        assert_eq!(
            PlanFacts::from_values(&[None, None, None, None, None, None]),
            None
        );
    }

    #[test]
    fn an_unknown_tokenizer_is_named() {
        let mut fields: HashMap<&str, Vec<u8>> =
            JobSpec::default().to_fields().into_iter().collect();
        fields.insert(TOKENIZER, b"emoji".to_vec());
        let err = JobSpec::from_fields(&fields).expect_err("refused");
        assert!(err.contains("emoji"), "{err}");
    }
}
