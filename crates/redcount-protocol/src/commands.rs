//! Which Redis commands the protocol sends besides `FCALL`: the reads (results, records, wake-ups)
//! and the library functions that only read. A Raft group derives its allow-list of reads from
//! [`READ_COMMANDS`]; [`crate::Job`] checks in debug builds that every read it sends is listed, so the
//! two cannot drift apart unnoticed.

/// Commands that only read a job's keys: what [`crate::Job`] reads for reports, `top`, `status` and
/// latency, and what a person inspects a job with (`redis-cli`). `XREAD` (also a blocking wake-up)
/// and `FCALL_RO` are reads too, listed apart because a Raft node serves them differently.
pub const READ_COMMANDS: &[&str] = &[
    "XRANGE",
    "XREVRANGE",
    "XLEN",
    "XINFO",
    "XPENDING",
    "ZRANGE",
    "ZREVRANGE",
    "ZRANGEBYSCORE",
    "ZREVRANGEBYSCORE",
    "ZSCORE",
    "ZMSCORE",
    "ZCARD",
    "ZRANK",
    "ZREVRANK",
    "ZCOUNT",
    "HGET",
    "HMGET",
    "HGETALL",
    "HLEN",
    "HEXISTS",
    "HKEYS",
    "GET",
    "MGET",
    "STRLEN",
    "EXISTS",
    "TYPE",
    "SCAN",
    "DBSIZE",
    "KEYS",
    "LRANGE",
    "LLEN",
    "SMEMBERS",
    "SCARD",
    "SISMEMBER",
];

/// One function of the library, as everything outside the Lua needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// Its registered name (`rc_claim`).
    pub name: &'static str,
    /// Its first argument is the caller's `now` (`clock(args[1])`): a Raft leader stamps its own
    /// clock there.
    pub takes_now: bool,
    /// Registered `no-writes`: called with `FCALL_RO`, safe on replicas, a read on a Raft node.
    pub read_only: bool,
}

const fn write(name: &'static str) -> Function {
    Function {
        name,
        takes_now: true,
        read_only: false,
    }
}

/// Every function of the library, in the order `library/register.lua` registers them: the one
/// table the Raft router, `FCALL` / `FCALL_RO` and docs/PROTOCOL.md's table of functions follow
/// (tests check each of them against it).
pub const FUNCTIONS: &[Function] = &[
    write("rc_create"),
    write("rc_enqueue"),
    write("rc_seal"),
    write("rc_claim"),
    write("rc_renew"),
    write("rc_commit"),
    write("rc_commit_parts"),
    write("rc_stage"),
    write("rc_merge_claim"),
    write("rc_merge_commit"),
    write("rc_fail"),
    write("rc_fail_piece"),
    write("rc_defer"),
    write("rc_event"),
    write("rc_stop"),
    write("rc_join"),
    write("rc_leave"),
    write("rc_jobs"),
    write("rc_split"),
    write("rc_drop"),
    Function {
        name: "rc_status",
        takes_now: true,
        read_only: true,
    },
    Function {
        name: "rc_top",
        takes_now: false,
        read_only: true,
    },
    Function {
        name: "rc_version",
        takes_now: false,
        read_only: true,
    },
];

/// The library function called `name`, if there is one (names are case-sensitive, as in Redis).
pub fn function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// True for a command [`crate::Job`] may send outside the library: a listed read, `XREAD` or
/// `FCALL_RO`.
pub fn is_read(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    name == "XREAD" || name == "FCALL_RO" || READ_COMMANDS.contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LIBRARY_SOURCE;

    /// Every function `library/register.lua` registers: its name, its Lua callback and whether
    /// it is flagged `no-writes`.
    fn registered() -> Vec<(&'static str, &'static str, bool)> {
        let mut registered = Vec::new();
        for line in LIBRARY_SOURCE.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("redis.register_function('") {
                let (name, rest) = rest.split_once("', ").expect("a callback");
                registered.push((name, rest.trim_end_matches(')'), false));
            } else if let Some(rest) =
                line.strip_prefix("redis.register_function { function_name = '")
            {
                let (name, rest) = rest.split_once("', callback = ").expect("a callback");
                let callback = rest.split(',').next().expect("callback");
                registered.push((name, callback, line.contains("'no-writes'")));
            }
        }
        registered
    }

    #[test]
    fn the_table_is_what_the_library_registers_in_its_order_with_its_flags() {
        let table: Vec<(&str, bool)> = FUNCTIONS.iter().map(|f| (f.name, f.read_only)).collect();
        let lua: Vec<(&str, bool)> = registered().iter().map(|r| (r.0, r.2)).collect();
        assert_eq!(table, lua);
    }

    #[test]
    fn a_function_takes_now_exactly_when_its_body_reads_the_clock_first() {
        for (name, callback, _) in registered() {
            let start = LIBRARY_SOURCE
                .find(&format!("local function {callback}("))
                .unwrap_or_else(|| panic!("no function {callback}"));
            let body = &LIBRARY_SOURCE[start..];
            let body = &body[..body.find("\nend\n").expect("an end")];
            let reads_clock = body.lines().take(3).any(|l| l.contains("clock(args[1])"));
            assert_eq!(
                function(name).map(|f| f.takes_now),
                Some(reads_clock),
                "{name}"
            );
        }
    }

    #[test]
    fn the_protocol_docs_list_every_function_with_its_flags() {
        let docs = include_str!("../../../docs/PROTOCOL.md");
        for f in FUNCTIONS {
            let row = docs
                .lines()
                .find(|l| l.starts_with(&format!("| `{}`", f.name)))
                .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no row for {}", f.name));
            let first = row.split(" | ").next().expect("a cell");
            assert_eq!(first.contains("read-only"), f.read_only, "{row}");
            assert_eq!(first.contains("no `now`"), !f.takes_now, "{row}");
        }
    }
}
