//! A fault-injection hook for tests of poison inputs: with `REDCOUNT_TEST_POISON=crash:NAME` (or
//! `hang:NAME`) in its environment, a worker aborts (or hangs) whenever it reads a file named NAME,
//! every time, as a worker would on an input that triggers a bug; `crash:NAME@OFFSET` only when the
//! range it reads holds byte OFFSET (one bad record in a large file). Unset, it costs one check per
//! file.

use std::path::Path;
use std::sync::OnceLock;

/// The environment variable that names the poison input.
pub const POISON_ENV: &str = "REDCOUNT_TEST_POISON";

enum Poison {
    Crash(String, Option<u64>),
    Hang(String, Option<u64>),
}

fn poison() -> Option<&'static Poison> {
    static POISON: OnceLock<Option<Poison>> = OnceLock::new();
    POISON
        .get_or_init(|| {
            let value = std::env::var(POISON_ENV).ok()?;
            let (how, target) = value.split_once(':')?;
            let (name, at) = match target.rsplit_once('@') {
                Some((name, at)) => (name.to_string(), Some(at.parse().ok()?)),
                None => (target.to_string(), None),
            };
            match how {
                "crash" => Some(Poison::Crash(name, at)),
                "hang" => Some(Poison::Hang(name, at)),
                _ => None,
            }
        })
        .as_ref()
}

/// Crashes or hangs the worker if bytes `start..end` of `path` are the poison input.
pub(crate) fn strike(path: &Path, start: u64, end: u64) {
    let Some(poison) = poison() else { return };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let hit = |p: &str, at: &Option<u64>| p == name && at.is_none_or(|at| start <= at && at < end);
    match poison {
        Poison::Crash(p, at) if hit(p, at) => {
            tracing::error!("{POISON_ENV}: {} crashes this worker", path.display());
            std::process::abort();
        }
        Poison::Hang(p, at) if hit(p, at) => {
            tracing::error!("{POISON_ENV}: {} hangs this worker", path.display());
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        _ => {}
    }
}
