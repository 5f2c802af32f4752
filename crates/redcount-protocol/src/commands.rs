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

/// Library functions registered with the `no-writes` flag: called with `FCALL_RO`, safe on replicas.
pub const READ_ONLY_FUNCTIONS: &[&str] = &["rc_status", "rc_top", "rc_version"];

/// Library functions whose first argument is not the caller's `now` (every other one reads
/// `clock(args[1])` first): a Raft leader stamps its own clock into `now` only where there is one.
pub const FUNCTIONS_WITHOUT_NOW: &[&str] = &["rc_top", "rc_version"];

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

    #[test]
    fn the_read_only_functions_are_those_the_library_flags_no_writes() {
        let flagged: Vec<&str> = LIBRARY_SOURCE
            .lines()
            .filter(|l| l.contains("'no-writes'"))
            .filter_map(|l| l.split("function_name = '").nth(1))
            .filter_map(|rest| rest.split('\'').next())
            .collect();
        assert_eq!(flagged, READ_ONLY_FUNCTIONS);
    }

    #[test]
    fn the_functions_without_now_are_those_that_do_not_read_the_clock_first() {
        // Every registered function: its name and the Lua function behind it.
        let mut registered = Vec::new();
        for line in LIBRARY_SOURCE.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("redis.register_function('") {
                let (name, rest) = rest.split_once("', ").expect("a callback");
                registered.push((name, rest.trim_end_matches(')')));
            } else if let Some(rest) =
                line.strip_prefix("redis.register_function { function_name = '")
            {
                let (name, rest) = rest.split_once("', callback = ").expect("a callback");
                registered.push((name, rest.split(',').next().expect("callback")));
            }
        }
        assert!(registered.len() > 20, "{registered:?}");
        let without: Vec<&str> = registered
            .iter()
            .filter(|(_, callback)| {
                let start = LIBRARY_SOURCE
                    .find(&format!("local function {callback}("))
                    .unwrap_or_else(|| panic!("no function {callback}"));
                let body = &LIBRARY_SOURCE[start..];
                let body = &body[..body.find("\nend\n").expect("an end")];
                !body.lines().take(3).any(|l| l.contains("clock(args[1])"))
            })
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(without, FUNCTIONS_WITHOUT_NOW);
    }
}
