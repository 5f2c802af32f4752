//! `cluster up --raft` and `raft-node` from the command line: serving jobs, refusing what cannot work.

use super::*;

#[test]
fn cluster_up_raft_serves_jobs_refuses_nondeterminism_and_goes_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gdir = dir.path().join("g");
    let up = run_ok(&[
        "cluster",
        "up",
        "--raft",
        "3",
        "--dir",
        gdir.to_str().expect("utf-8"),
    ]);
    let url = String::from_utf8_lossy(&up.stdout).trim().to_string();
    let group = Group::load(&gdir).expect("group file");
    // raft-group.json and the password file hold the group's password: 0600, both.
    assert!(assert_secret_files_private(&gdir, &group.password) >= 2);
    struct Down(PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = redcount_server::raft_group::group_down(&self.0);
        }
    }
    let _down = Down(gdir.clone());
    assert!(url.starts_with("redis+raft://"), "{url}");
    let corpus = redcount_testkit::corpus::sample_corpus();
    let files = files_below(&corpus);
    let counts = count_with(dir.path(), &[&corpus], &["--redis", &url, "--job", "sotu"]);
    assert_same_counts(&oracle_count(&files), &counts);
    let status = run_ok(&["cluster", "status", "--dir", gdir.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&status.stdout);
    let leaders = text
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("leader"))
        .count();
    assert_eq!(leaders, 1, "one node leads: {text}");
    assert_eq!(text.lines().count(), 4, "a header and three nodes: {text}");
    // Commands that would make replicas diverge are refused with a reason.
    let mut con = redis::Client::open(group.node_url(&group.nodes[0]))
        .and_then(|c| c.get_connection())
        .expect("connect");
    let err = redis::cmd("EVAL")
        .arg("return redis.call('TIME')")
        .arg(0)
        .query::<redis::Value>(&mut con)
        .expect_err("EVAL accepted");
    assert!(err.to_string().contains("not accepted"), "{err}");
    run_ok(&["cluster", "down", "--dir", gdir.to_str().expect("utf-8")]);
    assert!(
        group.nodes.iter().all(|n| group.pid(n).is_none()),
        "a node survived cluster down"
    );
    // Up again: the same group, from its logs and snapshots, with the finished job in it.
    let again = run_ok(&[
        "cluster",
        "up",
        "--raft",
        "3",
        "--dir",
        gdir.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        url,
        "the same group"
    );
    let link = redcount_protocol::Link::open(&url, redcount_protocol::LinkOptions::default())
        .expect("url");
    let mut job = redcount_protocol::Job::new(link, "sotu").expect("job");
    let kept: Counts = job.all_counts().expect("counts").into_iter().collect();
    assert_same_counts(&oracle_count(&files), &kept);
    // A crashed node is started again by `cluster up`, the others are left alone.
    let pid = group.pid(&group.nodes[0]).expect("node 1 runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill node 1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while group.pid(&group.nodes[0]).is_some() {
        assert!(Instant::now() < deadline, "node 1 did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    let third = run_ok(&[
        "cluster",
        "up",
        "--raft",
        "3",
        "--dir",
        gdir.to_str().expect("utf-8"),
    ]);
    assert!(
        String::from_utf8_lossy(&third.stderr).contains("started 1 of the 3 nodes"),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert!(
        group.nodes.iter().all(|n| group.pid(n).is_some()),
        "all three run again"
    );
    // `jobs rm` through the group: a replicated rc_drop, so every replica loses exactly the job.
    group
        .wait_for_leader(Duration::from_secs(15))
        .expect("a leader");
    run_ok(&["jobs", "rm", "sotu", "--redis", &url]);
    let listing = run_ok(&["jobs", "--redis", &url]);
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("no redcount jobs"),
        "{}",
        String::from_utf8_lossy(&listing.stdout)
    );
}

/// Runs `redcount ARGS`, which must fail with `reason` in its message.
fn assert_refused(args: &[&str], reason: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(reason), "{args:?}: {stderr}");
}

#[test]
fn bad_raft_command_lines_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8");
    assert_refused(&["cluster", "up", "--raft", "2", "--dir", d], "odd number");
    let three = "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3";
    let bare = [
        "raft-node",
        "--dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--id",
        "1",
    ];
    assert_refused(
        &[&bare[..], &["--peers", three]].concat(),
        "needs --requirepass-file",
    );
    let pw = dir.path().join("password");
    std::fs::write(&pw, "s3cret").expect("write");
    let pw = pw.to_str().expect("utf-8");
    let node = [
        "raft-node",
        "--dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--requirepass-file",
        pw,
        "--peers",
    ];
    assert_refused(
        &[&node[..], &[three, "--id", "4"]].concat(),
        "does not list this node's id 4",
    );
    assert_refused(
        &[&node[..], &["1-127.0.0.1:1", "--id", "1"]].concat(),
        "is not id=host:port",
    );
    let nothing = run(&["cluster", "status", "--dir", d]);
    assert!(!nothing.status.success(), "status of an empty directory");
}
