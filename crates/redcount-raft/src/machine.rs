//! The project's own view of a replicated state machine, free of any Raft library's types: it applies
//! committed steps in order, records how far it got together with its data, and dumps or restores
//! itself as one image. `state_machine.rs` adapts it to openraft; `redis_machine.rs` is the one
//! implementation (the node's private redis-server).

use std::future::Future;

/// One committed log entry, as the machine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// A command (RESP bytes) to run, or None for an entry that only moves the position.
    pub command: Option<&'a [u8]>,
    /// The group's membership to record from this step on (opaque bytes), if the entry changes it.
    pub membership: Option<&'a [u8]>,
    /// Where the log stands after this step (opaque bytes, stored with the data).
    pub position: &'a [u8],
}

/// What the machine recorded with its data: the position and membership of its last step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    pub position: Option<Vec<u8>>,
    pub membership: Option<Vec<u8>>,
}

/// A deterministic state machine driven by a replicated log.
pub trait Machine: Send + Sync + 'static {
    /// What the last applied step recorded (nothing for a fresh machine).
    fn recorded(&self) -> impl Future<Output = std::io::Result<Recorded>> + Send;

    /// Applies `steps` in order, atomically with recording the last one's position (and the last
    /// membership among them); one reply per step (RESP bytes; `+OK` for a step without a command).
    /// A command that fails deterministically fails in its reply, not as an error.
    fn apply(
        &self,
        steps: &[Step<'_>],
    ) -> impl Future<Output = std::io::Result<Vec<Vec<u8>>>> + Send;

    /// An image of the data and what it records, taken at one instant between two applies.
    fn dump(&self) -> impl Future<Output = std::io::Result<(Recorded, Vec<u8>)>> + Send;

    /// Replaces the data with an image made by [`Machine::dump`]; returns what it records.
    fn restore(&self, image: &[u8]) -> impl Future<Output = std::io::Result<Recorded>> + Send;
}
