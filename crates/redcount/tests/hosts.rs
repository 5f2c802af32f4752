//! Workers on other hosts: Redis on one "host", the driver and two workers on a second, two more
//! workers on a third, each host a network namespace of its own (root only), joined by a bridge.
//! Every worker reaches Redis through a proxy on the Redis host that delays each way (this kernel
//! has no `tc netem`: the delay is the test kit's proxy's), and each worker host runs on its own
//! clock (faketime, minutes apart). The counts are exact and both hosts' workers committed.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;
use redcount_testkit::netns::Host;
use redcount_testkit::Fault;

/// `redcount ARGS` inside `host`, its clock moved by `offset` (a faketime offset like "+90s"), with
/// the Redis URL in its environment only.
fn redcount_on(host: &Host, offset: &str, url: &str, args: &[&str]) -> Child {
    let mut cmd = host.command("faketime");
    cmd.args(["-f", offset])
        .arg(env!("CARGO_BIN_EXE_redcount"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("REDIS_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("start redcount in its namespace")
}

#[test]
fn workers_on_two_other_hosts_with_10ms_round_trips_and_skewed_clocks_count_exactly() {
    let Some(mut lan) = lan_or_skip() else {
        return;
    };
    assert!(
        std::process::Command::new("faketime")
            .arg("-f")
            .arg("+0s")
            .arg("true")
            .status()
            .is_ok_and(|s| s.success()),
        "faketime is missing: scripts/deps.sh installs it"
    );
    let db = lan.host("db").expect("host db");
    let a = lan.host("a").expect("host a");
    let b = lan.host("b").expect("host b");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let password = redcount_server::random_hex(16);
    let (server, proxy, url) = db
        .redis_behind_proxy(d, &password)
        .expect("redis-server and its proxy in host db");
    let _server = ChildGuard(vec![server]);
    proxy.set(Fault::Delay(Duration::from_millis(5)));

    let corpus = d.join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 60, 2_000, 40_000, 61);
    let expected = oracle_count(&files);
    let out = d.join("out.tsv");
    let out_s = out.display().to_string();
    let corpus_s = corpus.display().to_string();
    // The driver plans and waits; the job's workers are the four started below.
    let driver = redcount_on(
        &a,
        "-45s",
        &url,
        &[
            "run",
            "--workers",
            "0",
            "--job",
            "hosts",
            "--no-pack",
            "--json",
            "--out",
            &out_s,
            &corpus_s,
        ],
    );
    let mut workers = ChildGuard::default();
    for (host, offset, name) in [
        (&a, "-45s", "a-1"),
        (&a, "-45s", "a-2"),
        (&b, "+90s", "b-1"),
        (&b, "+90s", "b-2"),
    ] {
        workers.0.push(redcount_on(
            host,
            offset,
            &url,
            &["worker", "--job", "hosts", "--name", name],
        ));
    }
    let done = wait_success(driver, Duration::from_secs(120), "driver on host a");
    assert_same_counts(&expected, &read_out_file(&out));
    let records = db.enter(|| {
        let link = redcount_protocol::Link::open(
            &format!("redis://:{password}@127.0.0.1:6379"),
            Default::default(),
        )
        .expect("url");
        redcount_protocol::Job::new(link, "hosts")
            .expect("job")
            .done_records()
            .expect("done records")
    });
    for host in ["a-", "b-"] {
        assert!(
            records.iter().any(|r| r.worker.starts_with(host)),
            "no worker on host {host} committed: {:?}",
            records.iter().map(|r| &r.worker).collect::<Vec<_>>()
        );
    }
    let v = json(&done);
    eprintln!(
        "3 hosts, 10 ms round trips, clocks 135 s apart: {} tasks, wall {} s, {} bytes through the proxy",
        records.len(),
        v["wall_seconds"],
        proxy.bytes()
    );
}
