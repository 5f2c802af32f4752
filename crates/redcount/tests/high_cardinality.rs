//! Millions of distinct words ("count by user id"): no library call may block Redis, since one Redis
//! serves every job and client on it. SLOWLOG of the job's own Redis must show no call over 50 ms,
//! and the counts are exact.

mod common;

use std::io::Write;

use common::*;
use redcount_server::{RedisServer, ServerOptions};

/// `ids` tokens drawn from `distinct` ids (seeded), one file.
fn write_ids(path: &std::path::Path, ids: u64, distinct: u64, seed: u64) {
    let mut rng = redcount_testkit::Rng::new(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for i in 0..ids {
        let id = rng.range(0, distinct);
        write!(f, "u{id:08x}{}", if i % 16 == 15 { '\n' } else { ' ' }).expect("write");
    }
    f.flush().expect("flush");
}

#[test]
fn a_million_distinct_ids_never_block_redis_and_count_exactly() {
    let server = RedisServer::start(ServerOptions {
        dir: None,
        config: vec![
            "slowlog-log-slower-than 50000".into(),
            "slowlog-max-len 1000".into(),
        ],
    })
    .expect("redis-server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("ids.txt");
    write_ids(&input, 1_500_000, 1_200_000, 3);
    let out = dir.path().join("out.tsv");
    let url = server.url();
    job()
        .workers(2)
        .top(0)
        .redis(&url)
        .out(&out)
        .input(&input)
        .succeed();
    assert_same_counts(&oracle_count(&[&input]), &read_out_file(&out));
    let mut con = redis::Client::open(url.as_str())
        .expect("url")
        .get_connection()
        .expect("connect");
    let slow: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(100)
        .query(&mut con)
        .expect("SLOWLOG");
    assert!(slow.is_empty(), "calls over 50 ms: {slow:?}");
}
