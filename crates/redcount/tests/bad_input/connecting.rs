//! A Redis that is not there or wants another password: one line, with the URL's form.

use super::*;

/// A Redis URL with the wrong port fails in one line that names the address and what to check
/// (it printed a retry warning, then the error, after 5 s).
#[test]
fn a_redis_that_is_not_there_is_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("a.txt");
    std::fs::write(&input, "hello world\n").expect("write");
    let url = format!("redis://127.0.0.1:{port}");
    let out = job()
        .env("REDIS_URL", &url)
        .arg("--no-progress")
        .input(&input)
        .output();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{said}");
    assert!(
        lines[0].contains(&format!("cannot reach redis at {url}")) && lines[0].contains("--redis"),
        "{said}"
    );
}

#[test]
fn a_missing_or_wrong_password_is_one_line_with_the_url_form() {
    // Test servers always have a (random) password.
    let server =
        redcount_server::RedisServer::start(Default::default()).expect("redis-server starts");
    let port = server.port();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("a.txt");
    std::fs::write(&input, "hello world\n").expect("write");
    for (url, expected) in [
        (format!("redis://127.0.0.1:{port}"), "needs a password"),
        (
            format!("redis://:wrong@127.0.0.1:{port}"),
            "refused the user name or password",
        ),
    ] {
        for args in [
            vec!["run", "--no-progress", &input.to_str().expect("utf-8")],
            vec!["jobs"],
        ] {
            let out = run_env(&[("REDIS_URL", url.clone())], &args);
            assert_eq!(out.status.code(), Some(1));
            let said = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "{said}");
            assert!(
                lines[0].contains(expected)
                    && lines[0].contains("redis://:PASSWORD@host:port")
                    && !lines[0].contains("wrong")
                    && !lines[0].contains("unauthenticated"),
                "{said}"
            );
        }
    }
}
