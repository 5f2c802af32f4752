//! Loading the Functions library, and noticing when a server has a stale one or none at all.

use redis::{Cmd, ConnectionLike, RedisResult};

use crate::con::Con;

/// Source of the library (`#!lua name=redcount`).
pub const LIBRARY_SOURCE: &str = include_str!("library.lua");

/// The version `rc_version` answers; bump `LIBRARY_VERSION` in library.lua when the protocol changes.
pub const LIBRARY_VERSION: i64 = parse_version(LIBRARY_SOURCE);
const _: () = assert!(LIBRARY_VERSION > 0, "library.lua must set LIBRARY_VERSION");

const fn parse_version(source: &str) -> i64 {
    // Finds "LIBRARY_VERSION = <digits>" at compile time, so the Rust and Lua sides cannot disagree.
    let bytes = source.as_bytes();
    let pattern = b"LIBRARY_VERSION = ";
    let mut i = 0;
    while i + pattern.len() < bytes.len() {
        let mut j = 0;
        while j < pattern.len() && bytes[i + j] == pattern[j] {
            j += 1;
        }
        if j == pattern.len() {
            let mut k = i + j;
            let mut value = 0i64;
            while k < bytes.len() && bytes[k].is_ascii_digit() {
                value = value * 10 + (bytes[k] - b'0') as i64;
                k += 1;
            }
            return value;
        }
        i += 1;
    }
    panic!("library.lua has no LIBRARY_VERSION")
}

/// Loads the library unless the server already has this exact version. Safe to call often.
pub fn ensure_library(con: &mut dyn ConnectionLike) -> RedisResult<()> {
    ensure_with(|cmd| cmd.query(con))
}

/// [`ensure_library`] on every primary of a cluster (a function runs on the shard of its keys, so
/// each needs the library; replicas get it from their primary), or on the one server.
pub(crate) fn ensure_library_everywhere(con: &mut Con) -> RedisResult<()> {
    match con.primaries()? {
        None => ensure_library(con),
        Some(nodes) => {
            for node in nodes {
                ensure_with(|cmd| con.query_on(&node, cmd))?;
            }
            Ok(())
        }
    }
}

/// Checks the version with `query`, and loads the library with it when it differs.
fn ensure_with(mut query: impl FnMut(&Cmd) -> RedisResult<redis::Value>) -> RedisResult<()> {
    let loaded = query(redis::cmd("FCALL_RO").arg("rc_version").arg(0))
        .and_then(|v| Ok(<i64 as redis::FromRedisValue>::from_redis_value(v)?));
    if matches!(loaded, Ok(v) if v == LIBRARY_VERSION) {
        return Ok(());
    }
    match query(
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(LIBRARY_SOURCE),
    ) {
        Ok(_) => Ok(()),
        // Redis before 7.0 has no Functions: say so rather than "unknown command".
        Err(e)
            if e.to_string()
                .to_ascii_lowercase()
                .contains("unknown command") =>
        {
            Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "redcount needs Redis 7.0 or newer (Redis Functions)",
                e.to_string(),
            )))
        }
        Err(e) => Err(e),
    }
}

/// True when an error means the server lacks the library (a fresh or restarted Redis).
pub(crate) fn is_missing_library(err: &redis::RedisError) -> bool {
    err.to_string().contains("Function not found")
}
