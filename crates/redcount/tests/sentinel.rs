//! Replicated Redis: a primary, two replicas and three Sentinels started by `cluster up`; the primary
//! is SIGKILLed mid-job, a replica is promoted, clients follow it, and the counts stay exact.

mod common;

use std::time::{Duration, Instant};

use common::*;
use redcount_protocol::{Job, Link, LinkOptions};
use redcount_server::sentinel::{cluster_down, cluster_up, Cluster};

/// Stops the cluster even when the test fails.
struct ClusterGuard(Cluster);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let _ = cluster_down(&self.0.dir);
    }
}

fn primary_port(cluster: &Cluster) -> Option<u16> {
    cluster.nodes.iter().copied().find(|&port| {
        redis::Client::open(cluster.node_url(port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
            .and_then(|mut con| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut con))
            .is_ok_and(
                |role| matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master"),
            )
    })
}

/// The Sentinels' configuration epoch: how many failovers they have done.
fn config_epoch(cluster: &Cluster) -> u64 {
    let sentinel = cluster.sentinels[0];
    let mut con = redis::Client::open(cluster.node_url(sentinel))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .expect("connect to a Sentinel");
    let fields: Vec<String> = redis::cmd("SENTINEL")
        .arg("master")
        .arg("redcount")
        .query(&mut con)
        .expect("SENTINEL MASTER");
    fields
        .chunks(2)
        .find(|kv| kv[0] == "config-epoch")
        .and_then(|kv| kv.get(1)?.parse().ok())
        .expect("config-epoch")
}

fn failover_run(sync_replicas: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let guard = ClusterGuard(cluster_up(&dir.path().join("cluster"), 2, 3).expect("cluster up"));
    let cluster = &guard.0;
    let url = cluster.url();
    let corpus = dir.path().join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 150, 500, 5_000, 51);
    let out = dir.path().join("out.tsv");
    let driver = redcount()
        .args([
            "run",
            "-w",
            "2",
            "--json",
            "-k",
            "0",
            "--job",
            "fo",
            "--worker-slow",
            "20ms",
            // Shorter than the failover (Sentinel waits 2 s before it even starts one): leases
            // run down only while a primary serves (library/leases.lua, lease_clock).
            "--lease-ms",
            "1s",
            // One task per file: the primary is killed after 20 commits of the 150.
            "--no-pack",
        ])
        .args(["--sync-replicas", sync_replicas, "--redis", &url, "--out"])
        .arg(&out)
        .arg(&corpus)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start driver");
    // Kill the primary once the job is well under way.
    let old = primary_port(cluster).expect("a primary");
    let mut job =
        Job::new(Link::open(&url, LinkOptions::default()).expect("url"), "fo").expect("job");
    let deadline = Instant::now() + Duration::from_secs(30);
    while job
        .status(
            redcount_protocol::now_ms(),
            std::time::Duration::from_secs(10),
        )
        .map(|s| s.done)
        .unwrap_or(0)
        < 20
    {
        assert!(Instant::now() < deadline, "the job never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = cluster.pid(old).expect("primary pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill primary");
    let done = wait_success(driver, Duration::from_secs(90), "driver");
    if json(&done)["recreated"] != 0 || (sync_replicas == "1" && json(&done)["redelivered"] != 0) {
        eprintln!("DRIVER STDERR:\n{}", String::from_utf8_lossy(&done.stderr));
        for log in std::fs::read_dir(&cluster.dir).unwrap() {
            let p = log.unwrap().path();
            if p.extension().is_some_and(|e| e == "log") {
                eprintln!(
                    "LOG {}:\n{}",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                );
            }
        }
        panic!("RECREATED");
    }
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let new = primary_port(cluster).expect("a new primary");
    assert_ne!(new, old, "a replica was promoted");
    // One failover, not two: a second one (a Sentinel judging the promoted replica down before it
    // had even pinged it) can promote a replica without the acknowledged commits.
    assert_eq!(config_epoch(cluster), 1, "the Sentinels failed over once");
    let v = json(&done);
    eprintln!(
        "--sync-replicas {sync_replicas}: failover {old} -> {new}; tasks recomputed {}, after a rollback {}, re-runs {}",
        v["recomputed"], v["recomputed_after_rollback"], v["recreated"]
    );
    v
}

#[test]
fn a_killed_primary_fails_over_and_the_job_stays_exact() {
    failover_run("0");
}

#[test]
fn with_sync_replicas_a_failover_loses_no_acknowledged_commit() {
    let v = failover_run("1");
    assert_eq!(v["recreated"], 0, "the promoted replica had the job");
    // No acknowledged commit was lost, and the promotion took no task from a live worker.
    assert_eq!(
        (v["recomputed"].as_u64(), v["redelivered"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
}

#[test]
fn sentinels_take_commands_only_with_the_clusters_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let guard = ClusterGuard(cluster_up(&dir.path().join("cluster"), 1, 3).expect("cluster up"));
    let cluster = &guard.0;
    for &port in &cluster.sentinels {
        let mut anyone = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .expect("connect");
        let refused: redis::RedisResult<redis::Value> = redis::cmd("SENTINEL")
            .arg("failover")
            .arg("redcount")
            .query(&mut anyone);
        let err = refused.expect_err("a Sentinel obeyed a client without the password");
        assert!(err.to_string().contains("NOAUTH"), "{err}");
    }
    // With the password (as the redis+sentinel:// URL carries it) jobs work as before.
    let corpus = dir.path().join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 10, 500, 3_000, 52);
    let counts = count_with(dir.path(), &[&corpus], &["--redis", &cluster.url()]);
    assert_same_counts(&oracle_count(&files), &counts);
    assert!(assert_secret_files_private(&cluster.dir, &cluster.password) >= 4);
}

#[test]
fn cluster_up_again_prints_the_url_and_restarts_a_dead_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cdir = dir.path().join("cluster");
    let cdir_s = cdir.to_str().expect("utf-8");
    let first = run_ok(&[
        "cluster",
        "up",
        "--replicas",
        "1",
        "--sentinels",
        "1",
        "--dir",
        cdir_s,
    ]);
    let guard = ClusterGuard(Cluster::load(&cdir).expect("cluster file"));
    let url = String::from_utf8_lossy(&first.stdout).trim().to_string();
    let replica = guard.0.nodes[1];
    let pid = guard.0.pid(replica).expect("replica pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill replica");
    let deadline = Instant::now() + Duration::from_secs(10);
    while guard.0.pid(replica).is_some() {
        assert!(Instant::now() < deadline, "the replica did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = run_ok(&["cluster", "up", "--dir", cdir_s]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        url,
        "the same URL again"
    );
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("started 1 of its processes again"), "{said}");
    assert!(
        guard.0.pid(replica).is_some(),
        "the dead replica runs again"
    );
}

/// `cmd` sent from inside `host` to the server at `addr`; None when it cannot be reached.
fn query_in<T: redis::FromRedisValue + Send>(
    host: &redcount_testkit::netns::Host,
    addr: &str,
    password: &str,
    cmd: &redis::Cmd,
) -> Option<T> {
    host.enter(|| {
        let mut con = redis::Client::open(format!("redis://:{password}@{addr}"))
            .ok()?
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        cmd.query(&mut con).ok()
    })
}

/// What the Sentinel at `addr` names as the primary (`host:port`), asked from inside `host`.
fn named_primary(
    host: &redcount_testkit::netns::Host,
    addr: &str,
    password: &str,
) -> Option<String> {
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("get-master-addr-by-name")
        .arg(redcount_server::sentinel::MASTER_NAME);
    let (h, p): (String, u16) = query_in::<Option<(String, u16)>>(host, addr, password, &cmd)??;
    Some(format!("{h}:{p}"))
}

/// The first word of `ROLE` of the server at `addr`, asked from inside `host`.
fn role_of(host: &redcount_testkit::netns::Host, addr: &str, password: &str) -> Option<String> {
    let role: Vec<redis::Value> = query_in(host, addr, password, &redis::cmd("ROLE"))?;
    match role.first() {
        Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// The Jepsen scenario of a Sentinel deployment: the primary is cut off from its replicas and every
/// Sentinel mid-job while the driver and the workers still reach it. The Sentinels promote a
/// replica; the old primary, with `cluster up`'s settings, refuses writes within 2 s instead of
/// taking commits the failover throws away, and clients follow the Sentinels to the new primary.
/// After the heal the old primary is a replica. The driver's counts are exact, and so is what the
/// current primary holds for the job afterwards: the job was not finished on a server whose
/// writes were then lost. Each "host" is a network namespace of its own (root only).
#[test]
fn a_primary_cut_off_from_its_replicas_and_sentinels_loses_no_commit() {
    use redcount_server::sentinel::{data_node_conf, sentinel_conf};
    let Some(mut lan) = lan_or_skip() else {
        return;
    };
    let p = lan.host("p").expect("host p");
    let r = lan.host("r").expect("host r");
    let w = lan.host("w").expect("host w");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let password = redcount_server::random_hex(16);
    let node = |addr: &str, port: u16| {
        format!(
            "port {port}\nbind {addr}\ndir {0}\nlogfile {0}/{port}.log\ndbfilename {port}.rdb\n\
             daemonize no\n{1}",
            d.display(),
            data_node_conf(&password, 2)
        )
    };
    let primary = format!("{}:6379", p.addr);
    let mut children = ChildGuard::default();
    children.0.push(
        p.spawn_redis(d, "6379", &node(&p.addr, 6379), false)
            .expect("start the primary in host p"),
    );
    for port in [6380, 6381] {
        let conf = node(&r.addr, port) + &format!("replicaof {} 6379\n", p.addr);
        children.0.push(
            r.spawn_redis(d, &port.to_string(), &conf, false)
                .expect("start a replica in host r"),
        );
    }
    // Both replicas streaming before the job starts (a write acknowledged by both).
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.enter(|| {
        let acked: i64 = redis::Client::open(format!("redis://:{password}@{primary}"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
            .and_then(|mut con| {
                redis::cmd("SET")
                    .arg("synced")
                    .arg(1)
                    .query::<()>(&mut con)?;
                redis::cmd("WAIT").arg(2).arg(1000).query(&mut con)
            })
            .unwrap_or(0);
        acked < 2
    }) {
        assert!(Instant::now() < deadline, "the replicas never synced");
    }
    let sentinels: Vec<String> = (26379..26382)
        .map(|port| format!("{}:{port}", r.addr))
        .collect();
    for (i, addr) in sentinels.iter().enumerate() {
        let port = 26379 + i;
        let conf = format!(
            "port {port}\nbind {}\ndir {}\nlogfile {}/{port}.log\ndaemonize no\n{}",
            r.addr,
            d.display(),
            d.display(),
            sentinel_conf(&password, &format!("{} 6379", p.addr), 2)
        );
        children.0.push(
            r.spawn_redis(d, &format!("sentinel-{port}"), &conf, true)
                .expect("start a Sentinel in host r"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while named_primary(&r, addr, &password).as_deref() != Some(primary.as_str()) {
            assert!(Instant::now() < deadline, "Sentinel {addr} never came up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let url = format!(
        "redis+sentinel://:{password}@{}/{}",
        sentinels.join(","),
        redcount_server::sentinel::MASTER_NAME
    );

    let corpus = d.join("in");
    let files = redcount_testkit::corpus::write_text_corpus(&corpus, 150, 500, 5_000, 52);
    let expected = oracle_count(&files);
    let out = d.join("out.tsv");
    let driver = w
        .command(env!("CARGO_BIN_EXE_redcount"))
        .env_remove("RUST_LOG")
        .env("REDIS_URL", &url)
        .args(["run", "-w", "2", "--json", "-k", "0", "--job", "part"])
        // One task per file, 60 ms each: the job outlasts the partition's first seconds.
        .args([
            "--no-pack",
            "--worker-slow",
            "60ms",
            "--lease-ms",
            "1s",
            "--out",
        ])
        .arg(&out)
        .arg(&corpus)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the driver in host w");
    let done_on = |host: &redcount_testkit::netns::Host| -> u64 {
        host.enter(|| {
            let link = Link::open(
                &format!("redis://:{password}@{primary}"),
                LinkOptions {
                    give_up_after: Duration::from_secs(1),
                    ..LinkOptions::default()
                },
            )
            .ok()?;
            Job::new(link, "part")
                .ok()?
                .status(redcount_protocol::now_ms(), Duration::from_secs(10))
                .ok()
                .map(|s| s.done)
        })
        .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while done_on(&w) < 10 {
        assert!(Instant::now() < deadline, "the job never got going");
        std::thread::sleep(Duration::from_millis(20));
    }

    lan.cut(&p, &r).expect("cut p from r");
    let cut_at = Instant::now();
    assert_eq!(
        role_of(&w, &primary, &password).as_deref(),
        Some("master"),
        "the workers' host still reaches the old primary"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let promoted = loop {
        match named_primary(&r, &sentinels[0], &password) {
            Some(named) if named != primary => break named,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the Sentinels never failed over");
        std::thread::sleep(Duration::from_millis(100));
    };
    let failover_after = cut_at.elapsed();
    // The old primary stays cut off (and reachable from w) a while longer: long enough, without
    // min-replicas-to-write, for the workers to finish the whole job there.
    std::thread::sleep(Duration::from_secs(6));
    lan.heal(&p, &r).expect("heal");

    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&expected, &read_out_file(&out));
    // The job as the current primary holds it: finished, every count exact.
    let deadline = Instant::now() + Duration::from_secs(20);
    while role_of(&w, &primary, &password).as_deref() != Some("slave") {
        assert!(
            Instant::now() < deadline,
            "the old primary never rejoined as a replica"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = d.join("after.tsv");
    let counts = w
        .command(env!("CARGO_BIN_EXE_redcount"))
        .env_remove("RUST_LOG")
        .env("REDIS_URL", &url)
        .args(["counts", "--job", "part", "--out"])
        .arg(&after)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("redcount counts");
    assert!(
        counts.status.success(),
        "counts on the current primary: {}",
        String::from_utf8_lossy(&counts.stderr)
    );
    assert_same_counts(&expected, &read_out_file(&after));
    let v = json(&done);
    eprintln!(
        "partition: {primary} cut off; {promoted} promoted after {failover_after:?}; tasks re-run {}, recomputed {}",
        v["redelivered"], v["recomputed"]
    );
}
