//! `redcount bench --coordinator`: what durability and replication cost, and what a crash costs.

use std::time::Duration;

use super::{run_whole, tempfile_dir, two_worker_job, write_corpora, BenchOptions};

/// One coordinator set-up measured by [`bench_coordinator`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModeRow {
    /// Which corpus.
    pub corpus: String,
    /// Which durability or replication mode.
    pub mode: String,
    /// Input MB per second.
    pub mb_per_second: f64,
    /// Wall time of the run.
    pub wall_seconds: f64,
    /// Throughput relative to plain Redis on the same corpus.
    pub relative: f64,
}

/// The throughput cost of each durability mode and of synchronous replication, against plain Redis,
/// with 2 workers; then the tasks recomputed per crash of each mode under `--chaos-redis`.
pub fn bench_coordinator(options: &BenchOptions) -> anyhow::Result<Vec<ModeRow>> {
    use redcount_driver::embedded::Durability;
    let corpora = write_corpora(options)?;
    let (small, large) = (&corpora.small, &corpora.large);
    let modes: [(&str, Durability, Option<u64>, bool, u32); 6] = [
        ("plain (no persistence)", Durability::None, None, false, 0),
        (
            "rdb, BGSAVE every 1 s",
            Durability::Rdb,
            Some(1000),
            false,
            0,
        ),
        ("aof everysec", Durability::AofEverysec, None, false, 0),
        ("aof always", Durability::AofAlways, None, false, 0),
        ("sentinel, 2 replicas", Durability::None, None, true, 0),
        (
            "sentinel, 2 replicas, --sync-replicas 1",
            Durability::None,
            None,
            true,
            1,
        ),
    ];
    let mut rows = Vec::new();
    println!("| corpus | coordinator | wall s | MB/s | vs plain |");
    println!("|---|---|---|---|---|");
    for (name, path) in [("small files", small), ("large files", large)] {
        let mut plain = 0.0;
        for (mode, durability, checkpoint, sentinel, sync) in modes {
            let cluster_dir = tempfile_dir()?;
            let cluster = if sentinel {
                Some(redcount_server::sentinel::cluster_up(
                    &cluster_dir.path().join("c"),
                    2,
                    3,
                )?)
            } else {
                None
            };
            let mut common = two_worker_job(options, path, super::lease_secs(10));
            common.durability = durability;
            common.checkpoint = checkpoint.map(std::time::Duration::from_millis);
            common.spec.sync_replicas = sync;
            common.redis = cluster.as_ref().map(|c| c.url());
            let summary = run_whole(common);
            if let Some(c) = &cluster {
                let _ = redcount_server::sentinel::cluster_down(&c.dir);
            }
            let summary = summary?;
            if plain == 0.0 {
                plain = summary.mb_per_second;
            }
            let row = ModeRow {
                corpus: name.into(),
                mode: mode.into(),
                mb_per_second: summary.mb_per_second,
                wall_seconds: summary.wall_seconds,
                relative: summary.mb_per_second / plain,
            };
            println!(
                "| {} | {} | {:.2} | {:.1} | {:.2} |",
                row.corpus, row.mode, row.wall_seconds, row.mb_per_second, row.relative
            );
            rows.push(row);
        }
    }
    println!();
    println!("| crash recovery (small files, SIGKILL every 1 s) | restarts | tasks recomputed after a rollback | per crash |");
    println!("|---|---|---|---|");
    for (mode, durability, checkpoint) in [
        ("rdb, BGSAVE every 250 ms", Durability::Rdb, Some(250)),
        ("aof everysec", Durability::AofEverysec, None),
        ("aof always", Durability::AofAlways, None),
    ] {
        let mut common = two_worker_job(options, small, super::lease_secs(1));
        common.spec.max_attempts = 100;
        common.durability = durability;
        common.checkpoint = checkpoint.map(std::time::Duration::from_millis);
        common.chaos_every = Some(std::time::Duration::from_secs(1));
        // Slow workers, so that the job lasts several crashes.
        common.worker.slow = Duration::from_millis(5);
        let s = run_whole(common)?;
        println!(
            "| {mode} | {} | {} | {:.1} |",
            s.redis_restarts,
            s.recomputed_after_rollback,
            s.recomputed_after_rollback as f64 / s.redis_restarts.max(1) as f64
        );
    }
    Ok(rows)
}
