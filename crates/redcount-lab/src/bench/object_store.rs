//! `redcount bench --object-store`: the same corpora counted from local files and from objects in
//! an S3-compatible server on loopback (moto, and s3s-fs when it is on PATH), side by side in one
//! run, runs interleaved, medians reported with the ratio to local files. Every run's counts are
//! checked against an independent count.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use redcount_testkit::s3::S3Server;

use super::{
    check_counts, median, run_whole, two_worker_job, word_counts, write_corpora, BenchOptions,
};

/// One source of one corpus, measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectStoreRow {
    /// Which corpus.
    pub corpus: String,
    /// `local files`, or the server the objects were read from.
    pub source: String,
    /// Input MB.
    pub mb: f64,
    /// Median wall time.
    pub wall_seconds: f64,
    /// MB per second at the median.
    pub mb_per_second: f64,
    /// Throughput relative to local files (1.0 = as fast).
    pub of_local: f64,
}

/// The bucket the corpora go into.
const BUCKET: &str = "redcount-bench";

/// Measures and prints a markdown table.
pub fn bench_object_store(
    options: &BenchOptions,
    runs: usize,
) -> anyhow::Result<Vec<ObjectStoreRow>> {
    let corpora = write_corpora(options)?;
    let mut servers: Vec<(&str, S3Server)> = vec![(
        "moto_server (Python)",
        S3Server::start().context("starting moto_server (scripts/test-venv.sh installs it)")?,
    )];
    let s3s_root = tempfile::Builder::new().prefix("redcount-s3s-").tempdir()?;
    match S3Server::start_s3s_fs(s3s_root.path()) {
        Ok(server) => servers.push(("s3s-fs (Rust)", server)),
        Err(err) => eprintln!("not measuring s3s-fs: {err}"),
    }
    for (_, server) in &servers {
        server.create_bucket(BUCKET)?;
        for (prefix, dir) in [("small", &corpora.small), ("large", &corpora.large)] {
            server
                .upload_dir(BUCKET, prefix, dir)
                .with_context(|| format!("uploading {}", dir.display()))?;
        }
    }
    println!("| corpus | source | MB | wall s (median of {runs}) | MB/s | of local |");
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (corpus, prefix, dir) in [
        ("small files", "small", &corpora.small),
        ("large files", "large", &corpora.large),
    ] {
        let files = redcount_input::expand::expand(&[dir.display().to_string()])?;
        let expected = word_counts(&files)?;
        // Interleaved: run i of every source, then run i + 1, so drift hits all alike.
        let mut walls: Vec<Vec<f64>> = vec![Vec::new(); servers.len() + 1];
        let mut mb = 0.0;
        for _ in 0..runs {
            for (i, walls) in walls.iter_mut().enumerate() {
                let (input, env) = match i {
                    0 => (dir.display().to_string(), Vec::new()),
                    _ => {
                        let server = &servers[i - 1].1;
                        (format!("s3://{BUCKET}/{prefix}"), server.env())
                    }
                };
                let (wall, bytes) = timed_run(options, &input, &env, &expected)?;
                walls.push(wall);
                mb = bytes as f64 / 1e6;
            }
        }
        let local = median(walls[0].clone());
        for (i, walls) in walls.iter().enumerate() {
            let wall = median(walls.clone());
            let row = ObjectStoreRow {
                corpus: corpus.to_string(),
                source: match i {
                    0 => "local files".to_string(),
                    _ => servers[i - 1].0.to_string(),
                },
                mb,
                wall_seconds: wall,
                mb_per_second: mb / wall.max(1e-9),
                of_local: local / wall.max(1e-9),
            };
            println!(
                "| {} | {} | {:.1} | {:.3} | {:.1} | {:.2} |",
                row.corpus, row.source, row.mb, row.wall_seconds, row.mb_per_second, row.of_local
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

/// One job over `input` with 2 workers and the store's variables in the environment the workers
/// inherit; checks every count. Returns (wall seconds, bytes).
fn timed_run(
    options: &BenchOptions,
    input: &str,
    env: &[(&'static str, String)],
    expected: &std::collections::HashMap<Vec<u8>, u64>,
) -> anyhow::Result<(f64, u64)> {
    for (key, value) in env {
        std::env::set_var(key, value);
    }
    let out = tempfile::NamedTempFile::new()?;
    let mut job = two_worker_job(options, Path::new(input), Duration::from_secs(10));
    job.out = Some(out.path().to_path_buf());
    let summary = run_whole(job);
    for (key, _) in env {
        std::env::remove_var(key);
    }
    let summary = summary?;
    anyhow::ensure!(
        summary.inputs_failed == 0,
        "{input}: {} inputs failed",
        summary.inputs_failed
    );
    check_counts(out.path(), expected).with_context(|| format!("counting {input}"))?;
    Ok((summary.wall_seconds, summary.bytes))
}
