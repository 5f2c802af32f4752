//! A fault-injection hook for tests of poison inputs: with `REDCOUNT_TEST_POISON=crash:NAME` (or
//! `hang:NAME`) in its environment, a worker aborts (or hangs) whenever it reads a file named NAME,
//! every time, as a worker would on an input that triggers a bug. Unset, it costs one check per file.

use std::path::Path;
use std::sync::OnceLock;

/// The environment variable that names the poison input.
pub const POISON_ENV: &str = "REDCOUNT_TEST_POISON";

enum Poison {
    Crash(String),
    Hang(String),
}

fn poison() -> Option<&'static Poison> {
    static POISON: OnceLock<Option<Poison>> = OnceLock::new();
    POISON
        .get_or_init(|| {
            let value = std::env::var(POISON_ENV).ok()?;
            match value.split_once(':')? {
                ("crash", name) => Some(Poison::Crash(name.to_string())),
                ("hang", name) => Some(Poison::Hang(name.to_string())),
                _ => None,
            }
        })
        .as_ref()
}

/// Crashes or hangs the worker if `path` is the poison input.
pub(crate) fn strike(path: &Path) {
    let Some(poison) = poison() else { return };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match poison {
        Poison::Crash(p) if p == name => {
            tracing::error!("{POISON_ENV}: {} crashes this worker", path.display());
            std::process::abort();
        }
        Poison::Hang(p) if p == name => {
            tracing::error!("{POISON_ENV}: {} hangs this worker", path.display());
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        _ => {}
    }
}
