//! What a node says to clients and peers: redis-py and redis-cli over RESP2 and RESP3, HELLO, CLIENT, INFO, forged peer frames.

use super::*;

#[test]
fn redis_py_and_an_interactive_redis_cli_speak_resp2_and_resp3_to_a_node() {
    let Some(python) = test_python() else {
        return;
    };
    let g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 20, 500, 4_000, 81);
    let (driver, out) = start_job(
        &g,
        dir.path(),
        "py",
        &corpus,
        "0ms",
        &["--aggregate-in", "redis"],
    );
    wait_success(driver, Duration::from_secs(120), "driver");
    let oracle = oracle_count(&files);
    assert_same_counts(&oracle, &read_out_file(&out));
    let mut expected: Vec<(&Vec<u8>, &u64)> = oracle.iter().collect();
    expected.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let top3: Vec<(String, u64)> = expected
        .iter()
        .take(3)
        .map(|(w, n)| (String::from_utf8_lossy(w).into_owned(), **n))
        .collect();
    let keys = redcount_protocol::JobKeys::new("py").expect("keys");
    let keys_json = serde_json::to_string(&keys.all()).expect("json");
    let leader = g.current_leader();
    let addr = g.node(leader).addr.clone();
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    for (proto, event) in [(2, 1), (3, 2)] {
        let probe = std::process::Command::new(&python)
            .args([
                "-c",
                REDIS_PY_PROBE,
                host,
                port,
                &proto.to_string(),
                &keys_json,
            ])
            .env("RC_PASSWORD", &g.group.password)
            .output()
            .expect("run python");
        assert!(
            probe.status.success(),
            "redis-py with protocol={proto} failed: {}",
            String::from_utf8_lossy(&probe.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("probe's JSON");
        assert_eq!(v["role"], "master", "{v}");
        assert_eq!(v["raft_role"], "leader", "{v}");
        assert_eq!(v["state"], "sealed", "{v}");
        assert_eq!(v["done"], v["tasks"], "{v}");
        let top: Vec<(String, u64)> = v["top"]
            .as_array()
            .expect("top")
            .chunks(2)
            .map(|p| {
                let n = p[1]
                    .as_str()
                    .expect("count")
                    .parse::<f64>()
                    .expect("number");
                (p[0].as_str().expect("word").to_string(), n as u64)
            })
            .collect();
        let mut top = top;
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        assert_eq!(top, top3, "rc_top over protocol {proto}: {v}");
        let head: Vec<u64> = v["head"]
            .as_array()
            .expect("head")
            .iter()
            .map(|p| p[1].as_f64().expect("a score as a number") as u64)
            .collect();
        let want: Vec<u64> = top3.iter().map(|(_, n)| *n).collect();
        assert_eq!(head, want, "ZRANGE WITHSCORES over protocol {proto}: {v}");
        assert_eq!(v["event"], event, "{v}");
        assert!(
            v["kinds"]
                .as_array()
                .expect("kinds")
                .iter()
                .any(|k| k == "probe"),
            "{v}"
        );
    }

    // redis-cli at its prompt, typed into by tmux, in RESP3 (-3): maps are printed as maps.
    let session = format!("rc-cli-{}", std::process::id());
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux")
    };
    struct Tmux(String);
    impl Drop for Tmux {
        fn drop(&mut self) {
            let _ = std::process::Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .output();
        }
    }
    let started = std::process::Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "120",
            "-s",
            &session,
        ])
        .args(["-e", &format!("REDISCLI_AUTH={}", g.group.password)])
        .args(["redis-cli", "-3", "-h", host, "-p", port])
        .output()
        .expect("tmux new-session");
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let _cleanup = Tmux(session.clone());
    let typed = |line: &str| {
        assert!(tmux(&["send-keys", "-t", &session, "-l", line])
            .status
            .success());
        assert!(tmux(&["send-keys", "-t", &session, "Enter"])
            .status
            .success());
    };
    let screen_until = |what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen =
                String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout)
                    .into_owned();
            if screen.contains(what) || Instant::now() > deadline {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Type only at the prompt: keys sent while redis-cli still starts are lost.
    let prompt = format!("{host}:{port}>");
    let screen = screen_until(&prompt);
    assert!(screen.contains(&prompt), "no redis-cli prompt: {screen}");
    typed("PING");
    let screen = screen_until("PONG");
    assert!(screen.contains("PONG"), "{screen}");
    typed(&format!("HGETALL {}", keys.meta));
    let screen = screen_until("\"state\" => \"sealed\"");
    assert!(
        screen.contains("\"state\" => \"sealed\""),
        "no RESP3 map at the prompt: {screen}"
    );
    typed("HELLO 3");
    let screen = screen_until("\"proto\" => (integer) 3");
    assert!(screen.contains("\"proto\" => (integer) 3"), "{screen}");
    assert!(
        !screen.contains(&g.group.password),
        "the password reached the screen"
    );
}

#[test]
fn forged_peer_frames_and_oversized_frames_before_auth_are_refused() {
    use std::io::{Read, Write};
    let g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 150, 1_000, 8_000, 79);
    let (driver, out) = start_job(&g, dir.path(), "forge", &corpus, "10ms", &[]);
    let leader = g.current_leader();
    let term = |g: &TestGroup, id: u64| -> u64 {
        g.status(id).expect("status")["term"].parse().expect("term")
    };
    let before: Vec<u64> = (1..=3).map(|id| term(&g, id)).collect();
    // What an attacker without the secret can send to a peer port: the old magic with a bincode
    // AppendEntries-sized frame, the current magic with a nonce and then junk where a proof should
    // be, and frames that claim a huge size. Each connection must be dropped without effect.
    let mut forged = vec![0u8; 40];
    forged[..4].copy_from_slice(&36u32.to_le_bytes());
    forged[4..12].copy_from_slice(&1000u64.to_le_bytes());
    for id in (1..=3).filter(|&id| id != leader) {
        let addr = g.node(id).addr.clone();
        for attempt in [
            [&b"\0rcraft1"[..], &forged].concat(),
            [&b"\0rcraft2"[..], &[9u8; 32], &[0u8; 32], &forged].concat(),
            [&b"\0rcraft2"[..], &[9u8; 32], &u32::MAX.to_le_bytes()[..]].concat(),
        ] {
            let mut s = std::net::TcpStream::connect(&addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let _ = s.write_all(&attempt);
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            assert!(
                rest.len() <= 64,
                "node {id} answered a forged peer with {} bytes",
                rest.len()
            );
        }
        // A client that has not authenticated may not announce a large bulk string: refused at
        // once, without waiting for (or allocating) its bytes.
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        s.write_all(b"*2\r\n$4\r\nAUTH\r\n$536870000\r\n")
            .expect("write");
        let mut reply = [0u8; 256];
        let n = s
            .read(&mut reply)
            .expect("an immediate refusal, not a wait for 512 MB");
        let reply = String::from_utf8_lossy(&reply[..n]);
        assert!(
            reply.starts_with("-ERR") && reply.contains("too long"),
            "{reply}"
        );
    }
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    let after: Vec<u64> = (1..=3).map(|id| term(&g, id)).collect();
    assert_eq!(after, before, "a forged frame moved a node's term");
    assert_eq!(g.leader(), Some(leader), "the leader changed");
    g.assert_replicas_identical();
}

#[test]
fn hello_client_setname_and_info_role_answer_as_redis_does() {
    let g = TestGroup::start(3, 2000);
    let leader = g.current_leader();
    let addr = g.node(leader).addr.clone();
    let mut con = redis::Client::open(format!("redis://{addr}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .expect("connect without a password");
    let err = |r: redis::RedisResult<redis::Value>| r.expect_err("refused").to_string();
    let hello = |con: &mut redis::Connection, args: &[&str]| {
        redis::cmd("HELLO").arg(args).query::<redis::Value>(con)
    };
    assert!(err(hello(&mut con, &["2"])).contains("NOAUTH"));
    assert!(err(hello(&mut con, &["2", "AUTH", "default", "wrong"])).contains("WRONGPASS"));
    assert!(err(hello(&mut con, &["4"])).contains("NOPROTO"));
    // HELLO 3 switches a connection to RESP3 (redis-py and go-redis open every connection so).
    let mut resp3 = redis::Client::open(format!("redis://{addr}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .expect("connect");
    let reply =
        hello(&mut resp3, &["3", "AUTH", "default", &g.group.password]).expect("HELLO 3 with AUTH");
    let redis::Value::Map(pairs) = &reply else {
        panic!("HELLO 3 answered with no map: {reply:?}");
    };
    assert!(
        pairs.contains(&(
            redis::Value::BulkString(b"proto".to_vec()),
            redis::Value::Int(3)
        )),
        "{reply:?}"
    );
    // The leader says so in Redis's words. An election under load (these are 2-core machines) may
    // move the leadership between finding the leader and asking it: then ask the new one.
    let mut leader = leader;
    for attempt in 1..=3 {
        let addr = g.node(leader).addr.clone();
        let mut con = redis::Client::open(format!("redis://{addr}"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect");
        let reply = hello(
            &mut con,
            &[
                "2",
                "AUTH",
                "default",
                &g.group.password,
                "SETNAME",
                "probe",
            ],
        )
        .expect("HELLO 2 with AUTH");
        let text = format!("{reply:?}");
        let info: String = redis::cmd("INFO").query(&mut con).expect("info");
        let now_leader = g.current_leader();
        if now_leader != leader && attempt < 3 {
            eprintln!("leadership moved from {leader} to {now_leader} meanwhile: asking again");
            leader = now_leader;
            continue;
        }
        assert!(text.contains("proto") && text.contains("master"), "{text}");
        let name: String = redis::cmd("CLIENT")
            .arg("GETNAME")
            .query(&mut con)
            .expect("getname");
        assert_eq!(name, "probe");
        assert!(info.contains("\r\nrole:master\r\n"), "{info}");
        assert!(info.contains("raft_role:leader"), "{info}");
        let _: Option<String> = redis::cmd("GET")
            .arg("nothing")
            .query(&mut con)
            .expect("a read");
        break;
    }
    // A follower says so in Redis's words.
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let info: String = redis::cmd("INFO")
        .query(&mut g.connect(follower))
        .expect("info");
    assert!(info.contains("\r\nrole:slave\r\n"), "{info}");
}
