//! The Raft type configuration: what a log entry carries (one client command, `now` already stamped
//! by the leader) and what applying it returns (the Redis reply, as RESP bytes).

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// Node ids are small integers (`--id 1`), as in the `--peers 1=host:port,...` list.
pub type NodeId = u64;

/// One replicated command, kept as the RESP bytes Redis will be sent (`*N\r\n$5\r\nFCALL...`), with
/// `now` already stamped: one buffer, so a commit of 100k words is copied, not rebuilt, on its way
/// through the log, the network and into each node's Redis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    #[serde(with = "serde_bytes")]
    pub resp: Vec<u8>,
}

impl Command {
    /// Encodes a command's arguments as a RESP array of bulk strings.
    pub fn from_args(args: &[Vec<u8>]) -> Command {
        let mut resp = Vec::with_capacity(args.iter().map(|a| a.len() + 16).sum::<usize>() + 16);
        resp.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            resp.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            resp.extend_from_slice(arg);
            resp.extend_from_slice(b"\r\n");
        }
        Command { resp }
    }

    /// The arguments back, or None when the bytes are not an array of bulk strings.
    pub fn args(&self) -> Option<Vec<Vec<u8>>> {
        fn number(bytes: &[u8], at: &mut usize, kind: u8) -> Option<usize> {
            if bytes.get(*at) != Some(&kind) {
                return None;
            }
            let end = *at + bytes[*at..].windows(2).position(|w| w == b"\r\n")?;
            let n = std::str::from_utf8(&bytes[*at + 1..end])
                .ok()?
                .parse()
                .ok()?;
            *at = end + 2;
            Some(n)
        }
        let bytes = &self.resp;
        let mut at = 0;
        let n = number(bytes, &mut at, b'*')?;
        let mut args = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let len = number(bytes, &mut at, b'$')?;
            let arg = bytes.get(at..at.checked_add(len)?)?;
            args.push(arg.to_vec());
            at += len + 2;
        }
        (at == bytes.len()).then_some(args)
    }
}

/// The leader's own Redis reply to a command, encoded as RESP so it is passed back verbatim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Vec<u8>);

openraft::declare_raft_types!(
    /// redcount's Raft: commands in, RESP replies out, snapshots as RDB bytes in memory.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::storage::Snapshot<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;

/// A storage error about the log, with the cause.
pub fn log_error(err: impl std::error::Error + 'static) -> StorageError {
    openraft::StorageIOError::write_logs(openraft::AnyError::new(&err)).into()
}

/// A storage error about the state machine (the private Redis), with the cause.
pub fn sm_error(message: impl std::fmt::Display) -> StorageError {
    let err = std::io::Error::other(message.to_string());
    openraft::StorageIOError::write_state_machine(openraft::AnyError::new(&err)).into()
}

#[cfg(test)]
mod tests {
    use super::Command;

    #[test]
    fn a_command_reads_back_its_arguments_and_garbage_reads_as_none() {
        let args = vec![
            b"FCALL".to_vec(),
            b"rc_event".to_vec(),
            b"a\r\nb".to_vec(),
            Vec::new(),
        ];
        assert_eq!(Command::from_args(&args).args(), Some(args));
        for bad in [
            &b""[..],
            b"*1\r\n",
            b"*1\r\n$5\r\nab\r\n",
            b"+OK\r\n",
            b"*1\r\n$1\r\nab\r\n",
        ] {
            let cmd = Command { resp: bad.to_vec() };
            assert_eq!(cmd.args(), None, "{bad:?}");
        }
    }
}
