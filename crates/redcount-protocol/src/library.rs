//! Loading the Functions library, and noticing when a server has a stale one or none at all.

use redis::{Cmd, ConnectionLike, RedisResult};

use crate::connection::con::Con;

/// The library's files, in the order they are joined (each uses only what the ones before it
/// define: Lua's `local function`s are visible after their definition).
macro_rules! library_files {
    ($($file:literal),* $(,)?) => {
        /// Source of the library (`#!lua name=redcount`): the files of `src/library/` joined.
        pub const LIBRARY_SOURCE: &str = concat!($(include_str!(concat!("library/", $file))),*);
        /// Each file of the library with its text, to tell where a line of the joined source is.
        pub const LIBRARY_FILES: &[(&str, &str)] =
            &[$(($file, include_str!(concat!("library/", $file)))),*];
    };
}

library_files!(
    "kernel.lua",    // errors, arguments, the clock, a job's keys and its end, task records
    "leases.lua",    // the lease clock, inflight records, delivering and burying a task
    "lifecycle.lua", // create, enqueue, seal
    "claim.lua",     // claim (with speculation) and renew
    "commit.lua",    // the `redis` aggregation's ZINCRBY commit
    "partials.lua",  // the `workers` aggregation: stage, commit parts, merges
    "failures.lua",  // fail, fail a piece, defer, split
    "jobs.lua",      // stop, join, leave, the register of jobs, events, drop
    "reads.lua",     // top, status, version
    "register.lua",  // every function registered
);

/// Where line `line` (1-based) of [`LIBRARY_SOURCE`] comes from: its file and line there (an
/// error from Redis names the joined source's line, `@user_function:27`).
pub fn library_line(line: usize) -> Option<(&'static str, usize)> {
    let mut first = 1;
    for (file, text) in LIBRARY_FILES {
        let lines = text.lines().count();
        if line < first + lines {
            return (line >= first).then(|| (*file, line - first + 1));
        }
        first += lines;
    }
    None
}

/// The version `rc_version` answers; bump `LIBRARY_VERSION` in library/kernel.lua when the protocol
/// changes.
pub const LIBRARY_VERSION: i64 = parse_version(LIBRARY_SOURCE);
const _: () = assert!(
    LIBRARY_VERSION > 0,
    "library/kernel.lua must set LIBRARY_VERSION"
);

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
    panic!("the library has no LIBRARY_VERSION")
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
        // A server without Functions (Redis before 7.0, a Valkey built without Lua): say which
        // server it is and what redcount needs, rather than "unknown command".
        Err(e) if lacks_functions(&e) => {
            let info = query(redis::cmd("INFO").arg("server"))
                .ok()
                .and_then(|v| <String as redis::FromRedisValue>::from_redis_value(v).ok())
                .unwrap_or_default();
            Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the server cannot run Lua functions",
                format!(
                    "it is {}, and redcount needs Redis 7.0 or newer, or Valkey 7.2 or newer, with \
                     Lua functions (FUNCTION LOAD; the server said: {e})",
                    server_name(&info)
                ),
            )))
        }
        Err(e) => Err(e),
    }
}

/// True when `FUNCTION LOAD` failed because the server has no Functions or no Lua engine.
fn lacks_functions(err: &redis::RedisError) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    text.contains("unknown command")
        || text.contains("unknown subcommand")
        || (text.contains("engine") && text.contains("lua"))
}

/// The server and version an `INFO server` reply names: `Valkey 9.1.2`, `Redis 7.0.15`.
pub fn server_name(info: &str) -> String {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    match (
        field("server_name"),
        field("valkey_version"),
        field("redis_version"),
    ) {
        (Some(name), Some(version), _) if name.eq_ignore_ascii_case("valkey") => {
            format!("Valkey {version}")
        }
        (_, _, Some(version)) => format!("Redis {version}"),
        _ => "a server of unknown version".into(),
    }
}

/// True when an error means the server lacks the library (a fresh or restarted Redis).
pub(crate) fn is_missing_library(err: &redis::RedisError) -> bool {
    err.to_string().contains("Function not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_joined_library_is_found_in_its_file() {
        let joined: Vec<&str> = LIBRARY_SOURCE.lines().collect();
        for (i, line) in joined.iter().enumerate() {
            let (file, at) = library_line(i + 1).expect("a file");
            let text = LIBRARY_FILES
                .iter()
                .find(|(f, _)| *f == file)
                .expect("known")
                .1;
            assert_eq!(text.lines().nth(at - 1), Some(*line), "line {}", i + 1);
        }
        assert_eq!(library_line(0), None);
        assert_eq!(library_line(joined.len() + 1), None);
        assert_eq!(library_line(1), Some(("kernel.lua", 1)));
    }

    #[test]
    fn the_server_is_named_with_its_version() {
        let valkey =
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n";
        assert_eq!(server_name(valkey), "Valkey 9.1.2");
        assert_eq!(server_name("redis_version:7.0.15\r\n"), "Redis 7.0.15");
        assert_eq!(server_name(""), "a server of unknown version");
    }

    #[test]
    fn a_server_without_functions_or_lua_is_recognised() {
        let err =
            |text: &str| redis::RedisError::from((redis::ErrorKind::Client, "x", text.to_string()));
        assert!(lacks_functions(&err("ERR unknown command 'FUNCTION'")));
        assert!(lacks_functions(&err("ERR Engine 'LUA' not found")));
        assert!(!lacks_functions(&err(
            "ERR Library 'redcount' already exists"
        )));
    }
}
