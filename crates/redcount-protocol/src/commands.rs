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
}
