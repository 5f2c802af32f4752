//! Bad arguments, systematically: every library function called with generated arguments (numbers
//! with spaces, `2.0`, `1e15`, negatives, 16 digits, empty strings, random bytes, wrong counts) on a
//! job with tasks, leases and partials, against a real redis-server. Each call either succeeds or
//! fails with the library's own named error (`ERR redcount: ...` or `NOJOB ...`), and a call that
//! fails leaves the whole dataset exactly as it was (`DEBUG DIGEST`): nothing is written before an
//! argument is refused.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use redcount_protocol::{
    Aggregation, ClaimRequest, Format, Job, JobKeys, JobSpec, Link, LinkOptions, NewTask,
};
use redcount_server::{RedisServer, ServerOptions};
use std::time::Duration;

const FUNCTIONS: [&str; 21] = [
    "rc_create",
    "rc_enqueue",
    "rc_seal",
    "rc_claim",
    "rc_renew",
    "rc_commit",
    "rc_commit_parts",
    "rc_stage",
    "rc_merge_claim",
    "rc_merge_commit",
    "rc_fail",
    "rc_fail_piece",
    "rc_defer",
    "rc_event",
    "rc_stop",
    "rc_join",
    "rc_leave",
    "rc_split",
    "rc_drop",
    "rc_status",
    "rc_top",
];

/// One argument: mostly things that look almost right.
fn argument() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"*".to_vec()),
        Just(b"".to_vec()),
        Just(b" 5".to_vec()),
        Just(b"2.0".to_vec()),
        Just(b"1e15".to_vec()),
        Just(b"-5".to_vec()),
        Just(b"0x10".to_vec()),
        Just(b"1234567890123456".to_vec()),
        Just(b"100000000000000000".to_vec()),
        Just(b"1-0".to_vec()),
        Just(b"2-0".to_vec()),
        Just(b"w".to_vec()),
        Just(b"i".to_vec()),
        Just(b"s".to_vec()),
        (0u64..2_000_000_000_000).prop_map(|n| n.to_string().into_bytes()),
        (0u64..20).prop_map(|n| n.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..24),
    ]
}

fn call(
    con: &mut redis::Connection,
    keys: &[String],
    func: &str,
    args: &[Vec<u8>],
) -> redis::RedisResult<redis::Value> {
    let ro = func == "rc_status";
    redis::cmd(if ro { "FCALL_RO" } else { "FCALL" })
        .arg(func)
        .arg(keys.len())
        .arg(keys)
        .arg(args)
        .query(con)
}

fn digest(con: &mut redis::Connection) -> String {
    redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(con)
        .expect("DEBUG DIGEST")
}

/// A well-formed call of `func` on a job set up by [`setup`] (tasks 1-6, 1-0 and 2-0 leased to `w`).
fn template(func: &str) -> Vec<&'static str> {
    match func {
        "rc_create" => vec!["*", "r2", "cfg.lease_ms", "1000"],
        // Groups of seq, path, start, end, fmt, more, due, ver.
        "rc_enqueue" => vec![
            "*", "7", "/d/7", "0", "10", "text", "", "", "", "8", "s3://b/8", "0", "10", "text",
            "", "5", "\"e1\"",
        ],
        "rc_seal" => vec!["*", "6"],
        "rc_claim" => vec![
            "*", "v", "1000", "2", "1000000", "3", "10000", "0", "0", "t1",
        ],
        "rc_renew" => vec!["*", "w", "1000", "1-0", "2-0"],
        "rc_commit" => vec![
            "*", "w", "2", "1-0", "3", "2-0", "3", "2", "2", "a", "b", "1", "1", "c",
        ],
        "rc_commit_parts" => vec![
            "*", "w", "tok", "2", "1-0", "3", "2-0", "3", "0", "i", "", "1", "i", "",
        ],
        "rc_stage" => vec!["*", "w", "tok", "1", "0", "piece"],
        "rc_merge_claim" => vec!["*", "m", "1000", "1", "0", "4", "2"],
        "rc_merge_commit" => vec![
            "*", "m", "tok", "0", "0", "1", "3", "1", "1", "0", "i", "", "0", "i", "",
        ],
        "rc_fail" => vec!["*", "w", "2-0", "unreadable"],
        "rc_fail_piece" => vec!["*", "w", "2-0", "0", "/d/x", "unreadable"],
        "rc_defer" => vec!["*", "w", "2-0", "10000"],
        "rc_event" => vec!["*", "kill", "detail"],
        "rc_stop" => vec!["*", "cancelled", "asked to"],
        "rc_join" => vec!["*", "w2", "i1", "10000"],
        "rc_leave" => vec!["*", "w2"],
        "rc_split" => vec!["*", "w", "2-0", "4"],
        // Forced: the job of the setup is still running.
        "rc_drop" => vec!["*", "1"],
        "rc_top" => vec!["3"],
        _ => vec!["*", "1000"],
    }
}

/// The keys of job `name`, in the order the library takes them.
fn keys_of(name: &str) -> Vec<String> {
    JobKeys::new(name)
        .expect("keys")
        .all()
        .iter()
        .map(|k| k.to_string())
        .collect()
}

/// A fresh job `name` with 6 tasks, 1-0 and 2-0 leased to `w`, and one partial to merge.
fn setup(url: &str, name: &str, aggregation: Aggregation) {
    let mut j = Job::new(Link::open(url, LinkOptions::default()).expect("url"), name).expect("job");
    let spec = JobSpec {
        aggregation,
        partitions: redcount_protocol::Partitions::clamped(2),
        ..JobSpec::default()
    };
    j.create(1_000, "r", &spec).expect("create");
    let tasks: Vec<NewTask> = (1..=6)
        .map(|seq| NewTask {
            seq,
            path: format!("/d/{seq}").into(),
            start: 0,
            end: 10,
            format: Format::Text,
            version: None,
            more: Vec::new(),
            due_ms: None,
        })
        .collect();
    j.enqueue(1_000, &tasks).expect("enqueue");
    let request = ClaimRequest {
        worker: "w",
        lease: Duration::from_secs(3600),
        max_tasks: 2,
        max_bytes: 1 << 20,
        max_attempts: 3,
        live_window: Duration::from_secs(10),
        speculate_factor: 0.0,
        speculate_min: Duration::ZERO,
    };
    // The fair share of 6 for one worker is 3: take 1-0 and 2-0 in two claims.
    for _ in 0..2 {
        let request = ClaimRequest {
            max_tasks: 1,
            ..request.clone()
        };
        j.claim(1_000, &request).expect("claim");
    }
    if aggregation == Aggregation::Workers {
        let blob = redcount_count::partial::encode([(b"word".as_slice(), 3u64)].into_iter());
        // Task 3 carries the partial, so 1-0 and 2-0 stay leased.
        let c = j.claim(1_000, &request).expect("claim 3");
        let ids: Vec<(String, u64)> = c.tasks.iter().map(|t| (t.id.clone(), 1)).collect();
        j.commit_parts(1_001, "w", &ids, &[(0, blob)])
            .expect("a partial to merge");
    }
}

#[test]
fn any_arguments_give_a_named_error_and_write_nothing_or_succeed() {
    let server = RedisServer::start(ServerOptions {
        dir: None,
        config: vec!["enable-debug-command local".into()],
    })
    .expect("redis-server starts");
    let url = server.url();
    // TestRunner::run takes an Fn: the connection and the job counter sit in cells.
    let con = std::cell::RefCell::new(
        redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .expect("connect"),
    );
    let jobs = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    // A function, its well-formed arguments with up to two of them replaced by something almost
    // right, sometimes cut short or extended.
    let strategy = (
        0..FUNCTIONS.len(),
        proptest::collection::vec((0..16usize, argument()), 0..3),
        prop_oneof![Just(None), (0..16usize).prop_map(Some)],
        proptest::collection::vec(argument(), 0..2),
    );
    runner
        .run(&strategy, |(f, swaps, cut, extra)| {
            let func = FUNCTIONS[f];
            let n = jobs.get() + 1;
            jobs.set(n);
            let name = format!("c{n}");
            // Keys only (the library stays): every case starts from a small, fresh dataset.
            let _: () = redis::cmd("FLUSHALL")
                .query(&mut *con.borrow_mut())
                .expect("FLUSHALL");
            let aggregation = if func == "rc_commit" {
                Aggregation::Redis
            } else {
                Aggregation::Workers
            };
            setup(&url, &name, aggregation);
            let mut args: Vec<Vec<u8>> = template(func)
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect();
            for (at, value) in swaps {
                let at = at % args.len();
                args[at] = value;
            }
            if let Some(len) = cut {
                args.truncate(len.max(1));
            }
            args.extend(extra);
            let keys = keys_of(&name);
            let con = &mut *con.borrow_mut();
            let before = digest(con);
            if let Err(err) = call(con, &keys, func, &args) {
                let text = err.to_string();
                prop_assert!(
                    text.contains("redcount:"),
                    "{func}({args:?}) failed without the library's own error: {text}"
                );
                prop_assert_eq!(
                    digest(con),
                    before,
                    "{}({:?}) failed with '{}' after writing",
                    func,
                    args,
                    text
                );
            }
            Ok(())
        })
        .expect("every call is refused cleanly or succeeds");
}

/// The property test changes these templates; unchanged, each must be a call the library takes, or
/// a stale template (the enqueue one once was: a field short) would only ever test refusals.
#[test]
fn every_template_is_a_call_the_library_takes() {
    let server = RedisServer::start(ServerOptions::default()).expect("redis-server starts");
    let url = server.url();
    let mut con = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    for (n, func) in FUNCTIONS.iter().enumerate() {
        let name = format!("t{n}");
        let aggregation = if *func == "rc_commit" {
            Aggregation::Redis
        } else {
            Aggregation::Workers
        };
        setup(&url, &name, aggregation);
        let args: Vec<Vec<u8>> = template(func)
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect();
        let keys = keys_of(&name);
        if let Err(err) = call(&mut con, &keys, func, &args) {
            panic!("{func} refused its own template: {err}");
        }
    }
}
