//! Which client commands a node accepts, and how each is served. Only commands whose effect is a pure
//! function of the dataset and their arguments may be replicated (the determinism rules of
//! docs/PROTOCOL.md): the redcount library's FCALLs, with `now` stamped by the leader, and FUNCTION
//! LOAD of that exact library. Reads from the protocol's allow-list (`READ_COMMANDS`) go to the
//! leader's Redis after a linearizability check. Everything else is refused with a message that says so.

use redcount_protocol::{function, LIBRARY_SOURCE, READ_COMMANDS};

use crate::frame::Frame;

/// How a command is served.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Answered by the node itself (connection, role, info, admin commands).
    Node(NodeCommand),
    /// Appended to the Raft log; `now_at` is the argument index of the caller's `now`, which the
    /// leader overwrites with its own clock.
    Write {
        now_at: Option<usize>,
    },
    /// Served by the leader's Redis after the leader confirmed it still leads.
    Read,
    /// Served by the leader's Redis without the round trip: a blocking `XREAD`, which callers only
    /// use as a wake-up and re-check by a read afterwards.
    Wakeup,
    /// Served by this node's own Redis, leader or not (`DEBUG DIGEST`, to compare replicas).
    Replica,
    Reject(Frame),
}

/// Commands the node answers itself.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeCommand {
    Ping,
    Echo,
    Auth,
    /// `HELLO [2|3 [AUTH user password] [SETNAME name]]`: 3 switches the connection to RESP3.
    Hello,
    /// `CLIENT SETNAME/GETNAME/SETINFO/...`.
    Client,
    Ok,
    Select,
    Quit,
    Role,
    Info,
    ConfigGet,
    Wait,
    Command,
    /// `RAFT.STATUS`: id, role, term, leader, applied and last log index.
    Status,
    /// `RAFT.ISOLATE 1|0`: the fault switch.
    Isolate,
    /// `RAFT.SNAPSHOT`: build a snapshot now.
    Snapshot,
}

/// Classifies a command by its arguments (`args[0]` is the name).
pub fn route(args: &[Vec<u8>]) -> Route {
    let Some(name) = args.first() else {
        return Route::Reject(Frame::error("ERR empty command"));
    };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase())
        .unwrap_or_default();
    match name.as_str() {
        "PING" => Route::Node(NodeCommand::Ping),
        "ECHO" => Route::Node(NodeCommand::Echo),
        "AUTH" => Route::Node(NodeCommand::Auth),
        "HELLO" => Route::Node(NodeCommand::Hello),
        "CLIENT" => Route::Node(NodeCommand::Client),
        "READONLY" | "READWRITE" => Route::Node(NodeCommand::Ok),
        "SELECT" => Route::Node(NodeCommand::Select),
        "QUIT" => Route::Node(NodeCommand::Quit),
        "ROLE" => Route::Node(NodeCommand::Role),
        "INFO" => Route::Node(NodeCommand::Info),
        "CONFIG" if sub == "GET" => Route::Node(NodeCommand::ConfigGet),
        "WAIT" => Route::Node(NodeCommand::Wait),
        "COMMAND" => Route::Node(NodeCommand::Command),
        "RAFT.STATUS" => Route::Node(NodeCommand::Status),
        "RAFT.ISOLATE" => Route::Node(NodeCommand::Isolate),
        "RAFT.SNAPSHOT" => Route::Node(NodeCommand::Snapshot),
        "FCALL" => route_fcall(args),
        "FCALL_RO" => Route::Read,
        "FUNCTION" if sub == "LOAD" => route_function_load(args),
        "FUNCTION" if sub == "LIST" || sub == "STATS" => Route::Read,
        "DEBUG" if sub == "DIGEST" || sub == "DIGEST-VALUE" => Route::Replica,
        "XREAD" if has_block(args) => Route::Wakeup,
        "XREAD" => Route::Read,
        name if READ_COMMANDS.contains(&name) => Route::Read,
        _ => Route::Reject(Frame::error(format!(
            "ERR redcount raft node: '{name}' is not accepted. A Raft group replicates only \
             deterministic commands: FCALL of the redcount library, FUNCTION LOAD of that library, \
             and reads ({}, XREAD, FCALL_RO); see RAFT.STATUS for the group",
            READ_COMMANDS.join(" ")
        ))),
    }
}

fn has_block(args: &[Vec<u8>]) -> bool {
    args.iter().any(|a| a.eq_ignore_ascii_case(b"BLOCK"))
}

/// `FCALL fn numkeys key... now arg...`: only the library's `rc_*` functions; `now` is ARGV[1]
/// except for the functions whose `takes_now` is false in the protocol's table of functions; a
/// read-only function called with `FCALL` is a read, as with `FCALL_RO` (nothing to log). An
/// unknown `rc_*` is logged as a write with a `now` (Redis answers it with its own error).
fn route_fcall(args: &[Vec<u8>]) -> Route {
    let name = args.get(1).map(|f| String::from_utf8_lossy(f).into_owned());
    let numkeys = args
        .get(2)
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse::<usize>().ok());
    match (name, numkeys) {
        (Some(f), Some(n)) if function(&f).is_some_and(|f| f.read_only) && args.len() >= 3 + n => {
            Route::Read
        }
        (Some(f), Some(n)) if f.starts_with("rc_") && args.len() >= 3 + n => Route::Write {
            now_at: (function(&f).is_none_or(|f| f.takes_now) && args.len() > 3 + n)
                .then_some(3 + n),
        },
        (Some(f), Some(_)) if f.starts_with("rc_") => Route::Reject(Frame::error(
            "ERR wrong number of arguments for 'fcall' command",
        )),
        (Some(f), _) if !f.starts_with("rc_") => Route::Reject(Frame::error(format!(
            "ERR redcount raft node: FCALL of '{f}' refused: only the redcount library's rc_* \
             functions are replicated"
        ))),
        _ => Route::Reject(Frame::error(
            "ERR syntax: FCALL function numkeys key... arg...",
        )),
    }
}

/// `FUNCTION LOAD [REPLACE] code`: only the exact library this node was built with, because code
/// that calls TIME or RANDOMKEY would make replicas diverge.
fn route_function_load(args: &[Vec<u8>]) -> Route {
    match args.last() {
        Some(code) if args.len() >= 3 && code.as_slice() == LIBRARY_SOURCE.as_bytes() => {
            Route::Write { now_at: None }
        }
        _ => Route::Reject(Frame::error(format!(
            "ERR redcount raft node: FUNCTION LOAD accepts only the redcount library of this build \
             (version {}); upgrade every node and client together",
            redcount_protocol::LIBRARY_VERSION
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn library_calls_are_replicated_with_now_located() {
        assert_eq!(
            route(&a(&["FCALL", "rc_claim", "2", "k1", "k2", "123", "w"])),
            Route::Write { now_at: Some(5) }
        );
        assert_eq!(
            route(&a(&["FCALL", "rc_leave", "1", "k", "123", "w1"])),
            Route::Write { now_at: Some(4) }
        );
        // Read-only functions are reads even through FCALL: nothing logged, and rc_top's first
        // argument (k) is never taken for a clock.
        assert_eq!(route(&a(&["fcall", "rc_version", "0"])), Route::Read);
        assert_eq!(
            route(&a(&["FCALL", "rc_top", "2", "k1", "k2", "10"])),
            Route::Read
        );
    }

    #[test]
    fn nondeterministic_or_foreign_commands_are_refused() {
        for cmd in [
            a(&["FCALL", "evil", "0"]),
            a(&["EVAL", "return redis.call('TIME')", "0"]),
            a(&["SET", "k", "v"]),
            a(&["FLUSHALL"]),
            a(&["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('f', function() return redis.call('TIME') end)"]),
            a(&["FCALL", "rc_claim", "5", "k"]),
        ] {
            assert!(matches!(route(&cmd), Route::Reject(_)), "{cmd:?} was accepted");
        }
    }

    #[test]
    fn reads_and_wakeups_are_told_apart() {
        assert_eq!(
            route(&a(&["XREAD", "COUNT", "1", "STREAMS", "s", "0"])),
            Route::Read
        );
        assert_eq!(
            route(&a(&["XREAD", "BLOCK", "100", "STREAMS", "s", "$"])),
            Route::Wakeup
        );
        assert_eq!(route(&a(&["DEBUG", "DIGEST"])), Route::Replica);
        assert_eq!(
            route(&a(&["FUNCTION", "LOAD", "REPLACE", LIBRARY_SOURCE])),
            Route::Write { now_at: None }
        );
    }
}
