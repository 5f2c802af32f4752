//! The one reader of Redis. Every open page is served from the snapshot it publishes twice a second,
//! so twenty open tabs cost Redis what one does. It follows each job's `done` stream incrementally
//! (only new records are read), so a long job is not re-read on every tick, and reads a finished
//! job's detail once more, then leaves it alone.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use redcount_latency::{histogram, Percentiles};
use redcount_protocol::{job_names, DoneRecord, Job, Link, LinkOptions, Now, Status};

use crate::metrics::Metrics;
use crate::model::{
    FilePoint, JobDetail, JobSummary, Latency, Overview, Snapshot, Throughput, WorkerRow,
    WORKERS_LISTED,
};

/// How often the reader reads Redis (and every page gets an update).
pub const TICK: Duration = Duration::from_millis(500);
/// How often the list of jobs is scanned for new and removed ones.
const SCAN_EVERY: Duration = Duration::from_secs(2);
/// Most commit records read per job per tick (each read is one short XRANGE).
const RECORDS_PER_TICK: usize = 5_000;
/// Files kept for the latency timeline, and seconds kept for the throughput chart.
const RECENT_FILES: usize = 2_000;
const THROUGHPUT_SECONDS: usize = 3_600;
/// Words shown as the live top.
const TOP_WORDS: usize = 15;
/// Tasks given up, listed with their errors.
const FAILED_LISTED: usize = 200;
/// Workers count as live when heard from within this window (as `status` counts them).
const LIVE_WINDOW: Duration = redcount_protocol::READER_LIVE_WINDOW;

/// Reads one Redis for the dashboard.
pub struct Reader {
    url: String,
    link: Link,
    /// Only this job (`run --ui`), or every job in the Redis.
    only: Option<String>,
    tracks: BTreeMap<String, Track>,
    scanned: Option<Instant>,
    metrics: Arc<Metrics>,
}

/// What the reader keeps of one job between ticks.
struct Track {
    job: Job,
    /// Commit records read so far (the `done` stream's ids are `1-0`, `2-0`, ...).
    records_read: u64,
    per_second: BTreeMap<u64, Throughput>,
    recent: VecDeque<FilePoint>,
    total: Histogram<u64>,
    wait: Histogram<u64>,
    run: Histogram<u64>,
    stream: bool,
    /// What each worker committed, from the commit records read (bounded by the job's workers).
    tallies: BTreeMap<String, WorkerRow>,
    /// The detail read after the job finished: nothing more to read.
    settled: bool,
    detail: Option<Arc<JobDetail>>,
}

/// The status counters the top words, the events and the failed tasks follow: those are read again
/// only when these moved, not on every tick.
fn changes(s: &Status) -> [u64; 4] {
    [s.commits, s.merges, s.events, s.failed_inputs()]
}

impl Reader {
    /// A reader of the Redis at `url` (any URL a job takes), of every job or only `only`.
    pub fn open(url: &str, only: Option<String>, metrics: Arc<Metrics>) -> anyhow::Result<Reader> {
        let link = Link::open(url, LinkOptions::default())?;
        Ok(Reader {
            url: url.to_string(),
            link,
            only,
            tracks: BTreeMap::new(),
            scanned: None,
            metrics,
        })
    }

    /// Reads what changed and returns the new snapshot. A failed read keeps the last data and says
    /// why in `overview.error`.
    pub fn tick(&mut self) -> Snapshot {
        let error = self.read_all().err().map(|e| format!("{e:#}"));
        let mut overview = Overview {
            redis: self.link.addr().to_string(),
            generated_ms: redcount_protocol::now_ms(),
            error,
            jobs: Vec::new(),
            workers: Vec::new(),
        };
        let mut details = BTreeMap::new();
        for (name, track) in &self.tracks {
            if let Some(detail) = &track.detail {
                overview.jobs.push(detail.summary.clone());
                overview.workers.extend(track.worker_rows(detail));
                details.insert(name.clone(), detail.clone());
            }
        }
        overview
            .workers
            .sort_by_key(|w| std::cmp::Reverse(w.heard_ms.max(w.last_ms)));
        overview.workers.truncate(WORKERS_LISTED);
        Snapshot {
            overview: Arc::new(overview),
            details,
        }
    }

    fn read_all(&mut self) -> anyhow::Result<()> {
        if self.scanned.is_none_or(|at| at.elapsed() >= SCAN_EVERY) {
            let names = match &self.only {
                Some(name) => vec![name.clone()],
                None => job_names(&mut self.link)?,
            };
            self.tracks.retain(|name, _| names.contains(name));
            for name in names {
                if !self.tracks.contains_key(&name) {
                    let job = Job::new(Link::open(&self.url, LinkOptions::default())?, &name)?;
                    self.tracks.insert(name, Track::new(job));
                }
            }
            self.scanned = Some(Instant::now());
        }
        let mut first_error = None;
        for (name, track) in &mut self.tracks {
            if track.settled {
                continue;
            }
            match track.read(&self.metrics) {
                Ok(detail) => {
                    self.metrics.update(name, &detail);
                    track.detail = Some(Arc::new(detail));
                }
                Err(err) => {
                    first_error.get_or_insert(err.context(format!("reading job '{name}'")));
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl Track {
    fn new(job: Job) -> Track {
        Track {
            job,
            records_read: 0,
            per_second: BTreeMap::new(),
            recent: VecDeque::new(),
            total: histogram(),
            wait: histogram(),
            run: histogram(),
            stream: false,
            tallies: BTreeMap::new(),
            settled: false,
            detail: None,
        }
    }

    /// One read of the job: its status, the commits since the last read, and what the page lists.
    fn read(&mut self, metrics: &Metrics) -> anyhow::Result<JobDetail> {
        let status = self.job.status(Now::Coordinator, LIVE_WINDOW)?;
        // A rollback (Redis restarted from an older checkpoint) shortened the stream: read again
        // from where it now ends, as its records are rewritten.
        self.records_read = self.records_read.min(status.done);
        let mut fresh = Vec::new();
        loop {
            let page = self
                .job
                .done_records_after(self.records_read, RECORDS_PER_TICK)?;
            let short = page.len() < RECORDS_PER_TICK;
            for (n, record) in page {
                self.records_read = self.records_read.max(n);
                fresh.push(record);
            }
            // A finished job's records are read to the end now; a running one's over the ticks.
            if short || !status.finished {
                break;
            }
        }
        for record in &fresh {
            self.record(record);
            metrics.observe(self.job.name(), record);
        }
        let waiting = status.tasks.saturating_sub(status.delivered);
        let oldest_waiting_ms = if waiting > 0 {
            self.job
                .oldest_waiting_due_ms(status.delivered)?
                .map(|due| status.now_ms.saturating_sub(due))
        } else {
            None
        };
        let last = self.detail.clone().unwrap_or_default();
        let [commits, merges, events, dead] = changes(&status);
        let [was_commits, was_merges, was_events, was_dead] = changes(&last.status);
        let top = if self.detail.is_none() || (commits, merges) != (was_commits, was_merges) {
            self.job
                .top(TOP_WORDS)?
                .into_iter()
                .map(|(w, n)| (redcount_protocol::escape_bytes(&w), n))
                .collect()
        } else {
            last.top.clone()
        };
        let workers = self.job.workers(status.now_ms)?;
        let events = if events != was_events {
            self.job.events()?
        } else {
            last.events.clone()
        };
        let failed = if dead != was_dead {
            self.job.dead_tasks_first(FAILED_LISTED)?
        } else {
            last.failed.clone()
        };
        let summary = self.summary(&status);
        self.settled = status.finished;
        Ok(JobDetail {
            summary,
            waiting,
            oldest_waiting_ms,
            top,
            workers,
            events,
            throughput: self.per_second.values().cloned().collect(),
            retry_command: crate::model::retry_command(&failed),
            failed,
            latency: Latency {
                total: Percentiles::from_histogram(&self.total),
                wait: Percentiles::from_histogram(&self.wait),
                run: Percentiles::from_histogram(&self.run),
                files: self.recent.iter().cloned().collect(),
            },
            status,
        })
    }

    /// The job's workers as rows of the jobs page: those it knows (heard from, with what they
    /// hold) and those whose commits the reader saw, with what each committed and failed.
    fn worker_rows(&self, detail: &JobDetail) -> Vec<WorkerRow> {
        let s = &detail.status;
        let mut rows = self.tallies.clone();
        for w in &detail.workers {
            let row = rows.entry(w.name.clone()).or_insert_with(|| WorkerRow {
                worker: w.name.clone(),
                job: self.job.name().to_string(),
                ..WorkerRow::default()
            });
            row.heard_ms = w.heard_ms;
        }
        for f in &detail.failed {
            if let Some(row) = rows.get_mut(&f.worker) {
                row.failed += 1;
            }
        }
        let window = LIVE_WINDOW.as_millis() as u64;
        for row in rows.values_mut() {
            row.heard_ago_ms = s.now_ms.saturating_sub(row.heard_ms);
            row.state = if s.finished || row.heard_ms == 0 {
                // Over, or removed from the job's workers (it left).
                "left"
            } else if s.now_ms.saturating_sub(row.heard_ms) <= window {
                "live"
            } else {
                "silent"
            };
        }
        rows.into_values().collect()
    }

    /// Adds one commit record to the charts and histograms.
    fn record(&mut self, d: &DoneRecord) {
        let tally = self
            .tallies
            .entry(d.worker.clone())
            .or_insert_with(|| WorkerRow {
                worker: d.worker.clone(),
                job: self.job.name().to_string(),
                first_ms: d.claimed_ms,
                ..WorkerRow::default()
            });
        tally.first_ms = tally.first_ms.min(d.claimed_ms);
        tally.last_ms = tally.last_ms.max(d.committed_ms);
        tally.tasks += 1;
        tally.bytes += d.bytes;
        tally.words += d.words;
        self.stream |= d.due_ms != d.injected_ms;
        let second = d.committed_ms / 1000 * 1000;
        let point = self.per_second.entry(second).or_insert(Throughput {
            at_ms: second,
            ..Throughput::default()
        });
        point.tasks += 1;
        point.bytes += d.bytes;
        point.words += d.words;
        while self.per_second.len() > THROUGHPUT_SECONDS {
            self.per_second.pop_first();
        }
        let latency = d.committed_ms.saturating_sub(d.due_ms);
        let wait = d.claimed_ms.saturating_sub(d.due_ms);
        let _ = self.total.record(latency);
        let _ = self.wait.record(wait);
        let _ = self.run.record(d.committed_ms.saturating_sub(d.claimed_ms));
        self.recent.push_back(FilePoint {
            due_ms: d.due_ms,
            latency_ms: latency,
            wait_ms: wait,
            attempts: d.attempts,
        });
        while self.recent.len() > RECENT_FILES {
            self.recent.pop_front();
        }
    }

    fn summary(&self, s: &Status) -> JobSummary {
        let end = if s.finished_ms > 0 {
            s.finished_ms
        } else {
            s.now_ms
        };
        // The rate over the last five whole seconds (none once the job is finished).
        let recent_from = s.now_ms.saturating_sub(6_000);
        let recent_bytes: u64 = self
            .per_second
            .range(recent_from..s.now_ms / 1000 * 1000)
            .map(|(_, p)| p.bytes)
            .sum();
        JobSummary {
            name: self.job.name().to_string(),
            phase: s.phase().to_string(),
            state: s.state.clone(),
            stream: self.stream,
            tasks: s.tasks,
            done: s.done,
            failed: s.failed_inputs(),
            bytes: s.bytes,
            done_bytes: s.done_bytes,
            progress: if s.tasks == 0 {
                0.0
            } else {
                (s.done + s.dead) as f64 / s.to_settle() as f64
            },
            bytes_per_second: if s.finished {
                0.0
            } else {
                recent_bytes as f64 / 5.0
            },
            age_ms: end.saturating_sub(s.created_ms),
        }
    }
}
