//! Stream jobs: exact counts with cycled inputs, one latency row per injected file (none for
//! duplicates), a killed worker's file re-delivered with its latency spike in the data, a straggler's
//! task finished by another worker, and valid plots. Short and bounded.

#[path = "../common/mod.rs"]
mod common;
mod exact;
mod faults;
mod follow;

use std::path::Path;

use common::*;
use redcount_testkit::corpus::write_text_corpus;

/// Latency CSV rows: (path, latency_ms, worker, attempts).
fn latency_rows(path: &Path) -> Vec<(String, u64, String, u64)> {
    latency_records(path)
        .into_iter()
        .map(|r| (r.path, r.latency, r.worker, r.attempts))
        .collect()
}

/// One row of the latency CSV.
struct LatencyRecord {
    path: String,
    due: u64,
    injected: u64,
    latency: u64,
    worker: String,
    attempts: u64,
}

fn latency_records(path: &Path) -> Vec<LatencyRecord> {
    let text = std::fs::read_to_string(path).expect("read latency csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("path,due_at_ms,injected_at_ms,claimed_at_ms,committed_at_ms,latency_ms,worker,attempts")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let ms = |i: usize| -> u64 { f[i].parse().expect("ms") };
            let (due, injected, committed, latency) = (ms(1), ms(2), ms(4), ms(5));
            assert_eq!(latency, committed - due, "latency = committed - due");
            assert!(due <= injected + 50, "accepted before it was due: {l}");
            LatencyRecord {
                path: f[0].to_string(),
                due,
                injected,
                latency,
                worker: f[6].to_string(),
                attempts: f[7].parse().expect("attempts"),
            }
        })
        .collect()
}

/// The oracle for `injected` files taken in turn from `files` (cycling).
fn cycled_oracle(files: &[std::path::PathBuf], injected: usize) -> Counts {
    let cycle: Vec<&std::path::PathBuf> = files.iter().cycle().take(injected).collect();
    oracle_count(&cycle)
}

/// A stream of 20 files cycling over 7, on a private Redis or on `redis`: exact counts, one
/// latency row per file, a point per file in the plot.
fn cycled_injection(redis: Option<&str>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 7, 500, 4_000, 31);
    let (out, lat, svg) = (
        dir.path().join("out.tsv"),
        dir.path().join("lat.csv"),
        dir.path().join("lat.svg"),
    );
    let (out_arg, lat_arg, svg_arg, corpus_arg) = (
        out.display().to_string(),
        lat.display().to_string(),
        svg.display().to_string(),
        corpus.display().to_string(),
    );
    let mut args = vec![
        "stream",
        "--rate",
        "100",
        "--batch",
        "3",
        "--files",
        "20",
        "-w",
        "2",
        "--json",
        "--out",
        &out_arg,
        "--latency-out",
        &lat_arg,
        "--plot",
        &svg_arg,
        &corpus_arg,
    ];
    if let Some(url) = redis {
        args.extend(["--redis", url]);
    }
    let o = run_ok(&args);
    assert_same_counts(&cycled_oracle(&files, 20), &read_out_file(&out));
    let rows = latency_rows(&lat);
    assert_eq!(rows.len(), 20, "one row per injected file");
    let v = json(&o);
    assert_eq!(v["injected_files"], 20);
    // The summary speaks of the files injected (20), not of the 7 it cycled over.
    assert_eq!(v["files"], 20, "{v}");
    let injected_bytes: u64 = (0..20)
        .map(|i| {
            std::fs::metadata(&files[i % files.len()])
                .expect("stat")
                .len()
        })
        .sum();
    assert_eq!(v["bytes"], injected_bytes, "{v}");
    assert_eq!(v["latency"]["count"], 20);
    let svg_text = std::fs::read_to_string(&svg).expect("read svg");
    assert!(svg_text.starts_with("<svg"));
    assert_eq!(
        svg_text.matches("<circle").count(),
        20 + 1,
        "a point per file, plus the legend's"
    );
    // Paths in the rows are the inputs, each as often as it was injected.
    let first = files[0].display().to_string();
    assert_eq!(
        rows.iter().filter(|r| r.0 == first).count(),
        3,
        "20 files over 7 inputs: the first thrice"
    );
}
