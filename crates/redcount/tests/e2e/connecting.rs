//! Reaching Redis: external and private servers, workers that join from elsewhere, wrong URLs, ACL users, servers without functions, the server named.

use super::*;

#[test]
fn workers_started_elsewhere_join_a_job_on_an_external_redis() {
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let files = write_text_corpus(&corpus, 30, 1_000, 20_000, 21);
    let out_file = dir.path().join("out.tsv");
    let mut driver = job()
        .workers(0)
        .job("shared")
        .out(&out_file)
        .input(&corpus)
        .env("REDIS_URL", server.url())
        .spawn();
    let mut guard = ChildGuard::default();
    for _ in 0..2 {
        guard.0.push(
            redcount()
                .args(["worker", "--job", "shared", "--redis", &server.url()])
                .spawn()
                .expect("start worker"),
        );
    }
    let status = redcount_testkit::wait_with_timeout(
        &mut driver,
        std::time::Duration::from_secs(60),
        "driver",
    );
    assert!(status.success());
    for w in &mut guard.0 {
        let s =
            redcount_testkit::wait_with_timeout(w, std::time::Duration::from_secs(10), "worker");
        assert!(
            s.success(),
            "workers exit by themselves when the job is finished"
        );
    }
    assert_same_counts(&oracle_count(&files), &read_out_file(&out_file));
    // The job stays readable: status and top.
    let url = server.url();
    let st = run_ok(&["status", "--redis", &url, "--job", "shared", "--json"]);
    let v = json(&st);
    assert_eq!(v["finished"], true);
    assert_eq!(v["done"], v["tasks"]);
    let (created, finished, now) = (
        v["created_ms"].as_u64().expect("created"),
        v["finished_ms"].as_u64().expect("finished_ms"),
        v["now_ms"].as_u64().expect("now"),
    );
    assert!(created <= finished && finished <= now, "{v}");
    // The human form reports the run's own span and no live workers once it is finished.
    let text = run_ok(&["status", "--redis", &url, "--job", "shared"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("finished") && text.contains("workers: done"),
        "{text}"
    );
    let span = format!("over {:.2} s", (finished - created) as f64 / 1000.0);
    assert!(text.contains(&span), "{text} (expected {span})");
    let top = run_ok(&["top", "--redis", &url, "--job", "shared", "-k", "2"]);
    assert_eq!(String::from_utf8_lossy(&top.stdout).lines().count(), 3);
    let list = run_ok(&["status", "--redis", &url]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "shared");
    // Re-using the name is refused with a hint, nothing is overwritten.
    let again = job()
        .workers(0)
        .job("shared")
        .redis(&url)
        .input(&corpus)
        .output();
    assert_eq!(again.status.code(), Some(1));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("is already finished") && said.contains("redcount counts --job shared"),
        "{said}"
    );
}

#[test]
fn a_wrong_redis_url_fails_within_seconds_saying_so_once() {
    let port = redcount_server::free_port().expect("a free port");
    let url = format!("redis://:s3cret@127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let corpus = redcount_testkit::sample_corpus();
    let corpus = corpus.to_str().expect("utf-8");
    let out = job().workers(1).redis(&url).input(corpus).output();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("cannot reach redis"), "{}", errors[0]);
    assert_eq!(
        errors[0].matches("Connection refused").count(),
        1,
        "{}",
        errors[0]
    );
    assert!(!stderr.contains("s3cret"), "the password leaked: {stderr}");
}

#[test]
fn a_redis_without_functions_is_refused_with_the_version_needed() {
    // A real redis-server whose FUNCTION command is gone, as on Redis 6.
    let server = redcount_server::RedisServer::start(redcount_server::ServerOptions {
        dir: None,
        config: vec!["rename-command FUNCTION \"\"".into()],
    })
    .expect("redis-server");
    let corpus = redcount_testkit::sample_corpus();
    let out = job()
        .workers(1)
        .redis(&server.url())
        .input(&corpus)
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("needs Redis 7.0 or newer"), "{stderr}");
}

#[test]
fn the_readmes_acl_user_can_run_and_inspect_jobs() {
    // The ACL line the README gives for a shared Redis: the job's keys and the commands redcount uses.
    let server = redcount_server::RedisServer::start(redcount_server::ServerOptions {
        dir: None,
        config: vec![
            "user rc on >rcpw ~rc:* +@all -@dangerous +info +role +config|get +function|load +wait +scan"
                .into(),
        ],
    })
    .expect("redis-server");
    let url = format!("redis://rc:rcpw@127.0.0.1:{}", server.port());
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 5, 300, 2_000, 12);
    let counts = count_with(dir.path(), &[&corpus], &["--redis", &url, "--job", "acl"]);
    assert_same_counts(&oracle_count(&files), &counts);
    let listing = run_ok(&["jobs", "--redis", &url]);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("acl "));
    run_ok(&["jobs", "rm", "acl", "--redis", &url]);
}

#[test]
fn workers_join_a_private_redis_through_the_url_file_it_names() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 5, 300, 2_000, 13);
    let out = dir.path().join("out.tsv");
    let mut driver = job()
        .workers(0)
        .job("private")
        .out(&out)
        .input(&corpus)
        .command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start driver");
    let stderr = driver.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let advice = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("waiting for workers"))
        .expect("the driver says how to join");
    let file = advice
        .split("$(cat ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no URL file named: {advice}"));
    let mode = std::fs::metadata(file)
        .expect("url file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{file} is readable by others: {mode:o}");
    let url = std::fs::read_to_string(file).expect("read url");
    assert!(
        !advice.contains(url.trim()),
        "the password was printed: {advice}"
    );
    let worker = redcount()
        .args(["worker", "--job", "private"])
        .env("REDIS_URL", url.trim())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run worker");
    assert!(worker.success());
    // Drain the rest so the driver never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let status = driver.wait().expect("driver");
    assert!(status.success());
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
}

#[test]
fn the_server_and_its_version_are_named_and_the_count_is_exact_on_it() {
    // scripts/test.sh runs this file again on Valkey with REDCOUNT_TEST_SERVER=Valkey: this test
    // makes sure that pass ran on the server it says.
    let server = redcount_server::RedisServer::start(Default::default()).expect("server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in");
    let files = write_text_corpus(&input, 30, 500, 5_000, 5);
    let out = dir.path().join("out.tsv");
    let run = job()
        .arg("-v")
        .arg("--no-progress")
        .redis(&server.url())
        .out(&out)
        .input(&input)
        .succeed();
    let said = String::from_utf8_lossy(&run.stderr);
    let expected = std::env::var("REDCOUNT_TEST_SERVER").unwrap_or_default();
    let named = said
        .lines()
        .find_map(|l| l.split_once(" is ").filter(|(a, _)| a.contains("redis at")))
        .map(|(_, server)| server.trim().to_string())
        .unwrap_or_default();
    assert!(
        named.starts_with("Redis 7")
            || named.starts_with("Redis 8")
            || named.starts_with("Valkey "),
        "{said}"
    );
    assert!(
        named.starts_with(&expected),
        "expected {expected}, ran on {named}"
    );
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
}
