//! Streams counted exactly with one latency row per file: cycled injection, a lived-in Redis, a stream longer than its history.

use super::*;

#[test]
fn cycled_injection_is_counted_exactly_with_one_latency_row_per_file() {
    cycled_injection(None);
}

#[test]
fn a_stream_on_a_lived_in_redis_is_exact_and_leaves_the_rest_as_it_was() {
    let server = lived_in::lived_in_redis();
    cycled_injection(Some(&server.url()));
    lived_in::assert_left_as_it_was(&server.url());
}

#[test]
fn a_stream_longer_than_its_history_keeps_only_the_newest_records_and_loses_no_row() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 9, 300, 2_000, 47);
    let (out, lat) = (dir.path().join("out.tsv"), dir.path().join("lat.csv"));
    let child = redcount()
        .args([
            "stream",
            "--rate",
            "200",
            "--batch",
            "4",
            "--files",
            "120",
            "-w",
            "2",
            "--json",
            "--job",
            "hist",
            "--history",
            "25",
            "--no-progress",
            "--out",
        ])
        .arg(&out)
        .arg("--latency-out")
        .arg(&lat)
        .arg(&corpus)
        .env("REDIS_URL", server.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start stream");
    let o = wait_success(child, std::time::Duration::from_secs(90), "stream");
    assert_same_counts(&cycled_oracle(&files, 120), &read_out_file(&out));
    // Every file has its row, though Redis kept only the last 25 records.
    let rows = latency_rows(&lat);
    assert_eq!(rows.len(), 120, "one row per injected file");
    let v = json(&o);
    assert_eq!(v["latency"]["count"], 120, "{v}");
    for (i, file) in files.iter().enumerate() {
        let want = (0..120).filter(|k| k % files.len() == i).count();
        let got = rows.iter().filter(|r| Path::new(&r.0) == file).count();
        assert_eq!(got, want, "rows of {}", file.display());
    }
    let mut con = redis::Client::open(server.url())
        .expect("url")
        .get_connection()
        .expect("connect");
    let xlen = |con: &mut redis::Connection, key: &str| -> u64 {
        redis::cmd("XLEN").arg(key).query(con).expect("XLEN")
    };
    assert_eq!(
        xlen(&mut con, "rc:{hist}:done"),
        25,
        "the history is trimmed"
    );
    assert_eq!(
        xlen(&mut con, "rc:{hist}:tasks"),
        0,
        "committed tasks are deleted"
    );
}
