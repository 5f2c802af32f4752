//! Network faults between clients and Redis, through the test kit's fault-injecting TCP proxy: the
//! proxy itself against a real redis-server, then a job whose every connection (driver and workers)
//! crosses it while it cuts, black-holes, drops requests or replies, delays and throttles, seeded.
//! (Partitions between Raft nodes are in raft/partitions.rs.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use redcount_server::RedisServer;
use redcount_testkit::corpus::{write_text_corpus, Rng};
use redcount_testkit::{Fault, FaultProxy};

fn connect(addr: &str, password: &str) -> redis::RedisResult<redis::Connection> {
    let con = redis::Client::open(format!("redis://:{password}@{addr}"))?
        .get_connection_with_timeout(Duration::from_secs(1))?;
    con.set_read_timeout(Some(Duration::from_millis(500)))?;
    Ok(con)
}

#[test]
fn the_fault_proxy_passes_cuts_delays_and_loses_replies_of_executed_requests() {
    let server = RedisServer::start(Default::default()).expect("redis-server");
    let direct = format!("127.0.0.1:{}", server.port());
    let proxy = FaultProxy::start(&direct).expect("proxy");
    let pw = server.password().to_string();
    let mut con = connect(&proxy.addr(), &pw).expect("through the proxy");
    let pong: String = redis::cmd("PING").query(&mut con).expect("ping");
    assert_eq!(pong, "PONG");

    proxy.set(Fault::Delay(Duration::from_millis(150)));
    let started = Instant::now();
    let _: i64 = redis::cmd("INCR").arg("k").query(&mut con).expect("incr");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "150 ms each way: {:?}",
        started.elapsed()
    );

    // The request arrives and runs; its reply is lost: the client times out.
    proxy.set(Fault::DropReplies);
    let lost: redis::RedisResult<i64> = redis::cmd("INCR").arg("k").query(&mut con);
    assert!(lost.is_err(), "a reply came through: {lost:?}");
    let mut side = connect(&direct, &pw).expect("direct");
    let k: i64 = redis::cmd("GET").arg("k").query(&mut side).expect("get");
    assert_eq!(k, 2, "the request whose reply was lost ran");

    // Requests lost: nothing runs.
    proxy.set(Fault::DropRequests);
    let mut con = connect(&proxy.addr(), &pw);
    if let Ok(con) = con.as_mut() {
        let lost: redis::RedisResult<i64> = redis::cmd("INCR").arg("k").query(con);
        assert!(lost.is_err());
    }
    let k: i64 = redis::cmd("GET").arg("k").query(&mut side).expect("get");
    assert_eq!(k, 2, "a dropped request ran");

    proxy.set(Fault::Cut);
    assert!(
        connect(&proxy.addr(), &pw)
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_err(),
        "a cut link let a connection through"
    );
    proxy.set(Fault::Pass);
    let mut con = connect(&proxy.addr(), &pw).expect("healed");
    let pong: String = redis::cmd("PING").query(&mut con).expect("ping");
    assert_eq!(pong, "PONG");
    assert!(proxy.bytes() > 0);
}

#[test]
fn a_job_whose_links_are_cut_blackholed_delayed_and_throttled_stays_exact() {
    let server = RedisServer::start(Default::default()).expect("redis-server");
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", server.port())).expect("proxy");
    let url = format!("redis://:{}@{}", server.password(), proxy.addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 300, 500, 4_000, 91);
    let out = dir.path().join("out.tsv");
    let mut driver = redcount()
        .args([
            "run",
            "-w",
            "2",
            "--json",
            "-k",
            "0",
            "--no-pack",
            "--lease",
            "2s",
        ])
        .args([
            "--worker-slow",
            "50ms",
            "--job",
            "net",
            "--redis",
            &url,
            "--out",
        ])
        .arg(&out)
        .arg(&corpus)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start driver");
    // Seeded faults, each for 0.4-1.2 s with a healthy spell between: every kind once, then random.
    let mut rng = Rng::new(17);
    let kinds = [
        Fault::Cut,
        Fault::DropReplies,
        Fault::Delay(Duration::from_millis(80)),
        Fault::DropRequests,
        Fault::Bandwidth(100_000),
        Fault::Blackhole,
    ];
    std::thread::sleep(Duration::from_millis(800));
    let mut applied = Vec::new();
    for i in 0..8 {
        let fault = kinds
            .get(i)
            .copied()
            .unwrap_or_else(|| kinds[rng.range(0, 6) as usize]);
        proxy.set(fault);
        std::thread::sleep(Duration::from_millis(rng.range(400, 1200)));
        proxy.set(Fault::Pass);
        applied.push(fault);
        std::thread::sleep(Duration::from_millis(rng.range(300, 800)));
    }
    assert!(
        matches!(driver.try_wait(), Ok(None)),
        "the job ended before every fault hit it"
    );
    let done = wait_success(driver, Duration::from_secs(150), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&done);
    eprintln!("faults {applied:?}: {v}");
    assert_eq!(v["tasks"].as_u64(), Some(300), "{v}");
    assert_eq!(v["recreated"], 0, "the job was never lost: {v}");
}

/// Makes a throw-away CA and a certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian package openssl)");
        assert!(ok.success(), "openssl {args:?}");
    };
    run(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
    ]
    .iter()
    .copied()
    .chain(["-days", "1", "-subj", "/CN=redcount-test-ca"])
    .collect::<Vec<_>>());
    run(&[
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "req.csr",
    ]
    .iter()
    .copied()
    .chain(["-subj", "/CN=127.0.0.1"])
    .collect::<Vec<_>>());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write");
    run(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn a_job_runs_over_tls_with_rediss_urls() {
    let dir = tempfile::tempdir().expect("temp dir");
    make_certificates(dir.path());
    let port = redcount_server::free_port().expect("port");
    let mut guard = ChildGuard::default();
    guard.0.push(
        std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-auth-clients",
                "no",
                "--requirepass",
                "s3cret",
                "--save",
                "",
            ])
            .arg("--tls-cert-file")
            .arg(dir.path().join("cert.pem"))
            .arg("--tls-key-file")
            .arg(dir.path().join("key.pem"))
            .arg("--tls-ca-cert-file")
            .arg(dir.path().join("ca.pem"))
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server with TLS"),
    );
    let url = format!("rediss://:s3cret@127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the TLS redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 30, 500, 4_000, 93);
    let out = dir.path().join("out.tsv");
    let ran = redcount()
        .args(["run", "-w", "2", "--redis", &url, "--out"])
        .arg(&out)
        .arg(&corpus)
        .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
        .output()
        .expect("run");
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    // Without the CA the certificate cannot be checked: refused, saying what to do.
    let refused = run(&["status", "--redis", &url]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("certificate") && stderr.contains("SSL_CERT_FILE"),
        "{stderr}"
    );
}
