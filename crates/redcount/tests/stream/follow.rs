//! `top --follow` shows the live result until the stream ends.

use super::*;

#[test]
fn top_follow_shows_the_live_result_until_the_stream_ends() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 5, 500, 3_000, 34);
    let driver = redcount()
        .args([
            "stream", "--rate", "8", "--files", "16", "-w", "2", "--job", "live", "--redis", &url,
        ])
        .arg(&corpus)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start stream");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !run(&["status", "--redis", &url, "--job", "live"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let follow = run_ok(&[
        "top", "--follow", "--redis", &url, "--job", "live", "-k", "3",
    ]);
    wait_success(driver, std::time::Duration::from_secs(60), "stream");
    let text = String::from_utf8_lossy(&follow.stdout);
    let frames: Vec<&str> = text.split("job live:").skip(1).collect();
    assert!(frames.len() >= 2, "it redrew while the stream ran: {text}");
    let last = frames.last().expect("a frame");
    assert!(
        last.contains("16 of 16 tasks done") && last.contains("(finished)"),
        "{last}"
    );
    // The last frame's top 3 is the exact result's top 3.
    let expected = cycled_oracle(&files, 16);
    let mut ranked: Vec<(&Vec<u8>, &u64)> = expected.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let rows: Vec<&str> = last.lines().skip(2).take(3).collect();
    for (row, (word, n)) in rows.iter().zip(ranked) {
        let shown = match std::str::from_utf8(word) {
            Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
            _ => word.escape_ascii().to_string(),
        };
        let want = format!("{n}  {shown}");
        assert!(row.trim_start().starts_with(&want), "{row:?} vs {want:?}");
    }
    // The latency of a finished job can be read, written and drawn again later.
    let (csv, svg) = (dir.path().join("again.csv"), dir.path().join("again.svg"));
    let (csv_s, svg_s) = (csv.display().to_string(), svg.display().to_string());
    let o = run_ok(&[
        "latency",
        "--redis",
        &url,
        "--job",
        "live",
        "--latency-out",
        &csv_s,
        "--plot",
        &svg_s,
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("16 files: latency p50"));
    assert_eq!(latency_rows(&csv).len(), 16);
    assert_eq!(
        std::fs::read_to_string(&svg)
            .expect("svg")
            .matches("<circle")
            .count(),
        16 + 1
    );
}
