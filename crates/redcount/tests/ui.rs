//! The live dashboard, end to end: a real headless Chromium (through chromedriver) watches a stream
//! job with a killed worker reach "finished" without reloading; twenty open event streams cost Redis
//! nothing more than none; `/metrics` carries the job's exact totals; other hosts are refused.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use redcount_testkit::corpus::write_text_corpus;
use redcount_testkit::ChildGuard;

/// chromedriver, or None when it is not installed here (CI installs it: there it must be).
fn chromedriver() -> Option<std::path::PathBuf> {
    let found = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromedriver is missing: .ci/run installs chromium and chromium-driver"
        );
        eprintln!(
            "skipped: chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
    }
    found
}

fn wait_for_port(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn browser(driver_port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1400", format!("--user-data-dir={}", profile.display())],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a chromium session through chromedriver")
}

async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_page_follows_a_stream_job_to_finished_without_reloading() {
    let Some(driver_exe) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 40, 2_000, 8_000, 77);
    let expected = redcount_testkit::oracle_count(&files);
    let top_word = expected
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(w, _)| redcount_protocol::escape_bytes(w))
        .expect("a word");

    let driver_port = redcount_server::free_port().expect("free port");
    let _driver = ChildGuard(vec![std::process::Command::new(driver_exe)
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver")]);
    // The browser first: a cold Chromium can take longer to start than the whole job runs.
    wait_for_port(driver_port, Duration::from_secs(20));
    let profile = tempfile::tempdir().expect("profile dir");
    let client = browser(driver_port, profile.path()).await;
    let ui_port = redcount_server::free_port().expect("free port");
    let out = dir.path().join("out.tsv");
    let mut job = ChildGuard(vec![redcount()
        .args([
            "stream",
            "--rate",
            "10",
            "-w",
            "2",
            "--job",
            "uitest",
            "--kill-worker",
            "1500ms",
        ])
        .args([&format!("--ui=127.0.0.1:{ui_port}"), "--out"])
        .arg(&out)
        .arg(&corpus)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the stream job")]);
    wait_for_port(ui_port, Duration::from_secs(30));
    let page = format!("http://127.0.0.1:{ui_port}/jobs/uitest");
    client.goto(&page).await.expect("open the job page");

    // Seen running, then finished, on the one page load.
    let mut phases = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(phase) = text_of(&client, "h1 [data-phase]").await {
            if phases.last() != Some(&phase) {
                phases.push(phase.clone());
            }
            if phase == "finished" {
                break;
            }
        }
        if Instant::now() >= deadline {
            let html = client.source().await.unwrap_or_default();
            let mut child = job.0.pop().expect("the job");
            let _ = child.kill();
            let out = child.wait_with_output().expect("the job's output");
            panic!(
                "the page never showed the job finished: {phases:?}\njob said:\n{}\npage:\n{html}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        phases.first().map(String::as_str),
        Some("running"),
        "{phases:?}"
    );
    assert_eq!(client.current_url().await.expect("url").as_str(), page);
    assert_eq!(text_of(&client, "#tasks-done").await.as_deref(), Some("40"));
    assert_eq!(
        text_of(&client, "#tasks-total").await.as_deref(),
        Some("40")
    );
    assert_eq!(
        text_of(&client, "#top tr:nth-child(2) td.word")
            .await
            .as_deref(),
        Some(top_word.as_str()),
        "the top word"
    );
    let markers = client
        .find_all(Locator::Css("line.event-marker[data-kind='kill-worker']"))
        .await
        .expect("find markers");
    assert_eq!(markers.len(), 2, "the kill on both charts");
    if let Some(docs) = std::env::var_os("REDCOUNT_UI_SCREENSHOTS") {
        let png = client.screenshot().await.expect("screenshot");
        std::fs::write(Path::new(&docs).join("ui-job.png"), png).expect("write screenshot");
        client
            .goto(&format!("http://127.0.0.1:{ui_port}/"))
            .await
            .expect("jobs page");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let png = client.screenshot().await.expect("screenshot");
        std::fs::write(Path::new(&docs).join("ui-jobs.png"), png).expect("write screenshot");
    }
    client.close().await.expect("close the browser");

    let done = wait_success(
        job.0.pop().expect("the job"),
        Duration::from_secs(60),
        "stream job",
    );
    let said = String::from_utf8_lossy(&done.stderr);
    assert!(said.contains(&format!("dashboard: {page}")), "{said}");
    assert_same_counts(&expected, &read_out_file(&out));
}

/// `GET path` on the dashboard with `host` as the Host header; returns (status line, body).
fn get(port: u16, path: &str, host: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the dashboard");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

fn commands_processed(redis: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(redis)
        .expect("INFO stats");
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_commands_processed")
}

#[test]
fn twenty_open_pages_add_no_redis_reads_and_metrics_are_exact() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 12, 500, 3_000, 78);
    let expected = redcount_testkit::oracle_count(&files);
    let counts = count_with(
        dir.path(),
        &[&corpus],
        &["--redis", &url, "--job", "m1", "--no-pack"],
    );
    assert_same_counts(&expected, &counts);

    let port = redcount_server::free_port().expect("free port");
    let ui = ChildGuard(vec![redcount()
        .args(["ui", "--listen", &format!("127.0.0.1:{port}")])
        .env("REDIS_URL", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redcount ui")]);
    wait_for_port(port, Duration::from_secs(20));
    let host = format!("127.0.0.1:{port}");
    // The reader has read the job once it is listed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get(port, "/api/jobs", &host).1.contains("\"m1\"") {
        assert!(Instant::now() < deadline, "the jobs page never listed m1");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The workers of every job: what each committed adds up to the job, and a finished job's
    // workers are not live.
    let (_, api) = get(port, "/api/jobs", &host);
    let overview: serde_json::Value = serde_json::from_str(&api).expect("overview JSON");
    let rows: Vec<&serde_json::Value> = overview["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter(|w| w["job"] == "m1")
        .collect();
    assert!(!rows.is_empty(), "{api}");
    let tasks: u64 = rows.iter().map(|w| w["tasks"].as_u64().unwrap_or(0)).sum();
    let words_seen: u64 = rows.iter().map(|w| w["words"].as_u64().unwrap_or(0)).sum();
    assert_eq!(tasks, 12, "{api}");
    assert_eq!(words_seen, expected.values().sum::<u64>(), "{api}");
    assert!(rows.iter().all(|w| w["state"] == "left"), "{api}");

    // Each page comes with the state of its moment: nothing waits for the first event.
    let (_, job_page) = get(port, "/jobs/m1", &host);
    assert!(
        job_page.contains(r#"id="initial">{"kind":"job","data":{"summary":{"name":"m1""#),
        "{job_page}"
    );
    let (_, jobs_page) = get(port, "/", &host);
    assert!(
        jobs_page.contains(r#"{"kind":"overview""#) && jobs_page.contains(r#""name":"m1""#),
        "{jobs_page}"
    );

    let (status, metrics) = get(port, "/metrics", &host);
    assert!(status.contains("200"), "{status}");
    let words: u64 = expected.values().sum();
    for line in [
        "redcount_tasks_committed_total{job=\"m1\"} 12".to_string(),
        format!("redcount_words_total{{job=\"m1\"}} {words}"),
        "redcount_tasks_failed_total{job=\"m1\"} 0".to_string(),
        "redcount_task_duration_seconds_count{job=\"m1\"} 12".to_string(),
        // The finished job: its state, and no live workers.
        "redcount_job_state{job=\"m1\",state=\"finished\"} 1".to_string(),
        "redcount_job_state{job=\"m1\",state=\"running\"} 0".to_string(),
        "redcount_live_workers{job=\"m1\"} 0".to_string(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no '{line}' in:\n{metrics}"
        );
    }
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).expect("size").len())
        .sum();
    let input_line = format!("redcount_input_bytes_total{{job=\"m1\"}} {bytes}");
    assert!(metrics.lines().any(|l| l == input_line), "{metrics}");

    // DNS rebinding: a page of another site that resolves to 127.0.0.1 is refused.
    let (refused, _) = get(port, "/api/jobs", &format!("evil.example:{port}"));
    assert!(refused.contains("421"), "{refused}");
    // No password reaches a page.
    let (_, overview) = get(port, "/api/jobs", &host);
    assert!(!overview.contains(server.password()), "{overview}");

    let mut redis = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    let window = Duration::from_secs(3);
    let before = commands_processed(&mut redis);
    std::thread::sleep(window);
    let idle = commands_processed(&mut redis) - before - 1;

    let mut tabs = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(s, "GET /events?job=m1 HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("send");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        tabs.push(BufReader::new(s));
    }
    let before = commands_processed(&mut redis);
    let started = Instant::now();
    let mut messages = 0;
    while started.elapsed() < window {
        for tab in &mut tabs {
            let mut line = String::new();
            tab.read_line(&mut line).expect("an event stream line");
            messages += usize::from(line.starts_with("event: job"));
        }
    }
    let with_tabs = commands_processed(&mut redis) - before - 1;
    eprintln!("redis commands in {window:?}: {idle} with no page open, {with_tabs} with 20; {messages} messages pushed");
    assert!(
        messages >= 20 * 2,
        "every tab gets a message at least every second: {messages}"
    );
    assert!(
        with_tabs <= idle + idle / 2 + 10,
        "20 open pages made the reader read more: {idle} -> {with_tabs}"
    );
    drop(ui);
}
