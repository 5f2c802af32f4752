//! The one clock of the protocol, the coordinator's: every function takes `now` as its first argument
//! (docs/PROTOCOL.md, "Time"), and workers and drivers leave it to the coordinator.

use std::time::{SystemTime, UNIX_EPOCH};

/// What a call passes as `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Now {
    /// The coordinator's own clock (`*`: Redis's TIME; a Raft leader stamps its own): what workers
    /// and drivers send, so that a worker's clock may be off by minutes without effect.
    Coordinator,
    /// A pinned time in ms since the epoch (tests that step time deterministically).
    At(u64),
}

impl Now {
    /// The argument as the library reads it.
    pub fn arg(self) -> Vec<u8> {
        match self {
            Now::Coordinator => b"*".to_vec(),
            Now::At(ms) => ms.to_string().into_bytes(),
        }
    }
}

impl From<u64> for Now {
    fn from(ms: u64) -> Now {
        Now::At(ms)
    }
}

/// Milliseconds since the Unix epoch on this machine's clock (a Raft leader's stamp; local timing).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
