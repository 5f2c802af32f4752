//! Network partitions, one-way links and an isolated leader: no acknowledged commit lost, no live worker charged.

use super::*;

#[test]
fn an_isolated_leader_stops_acknowledging_and_a_new_one_takes_over() {
    let g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 200, 1_000, 8_000, 74);
    let (mut driver, out) = start_job(&g, dir.path(), "part", &corpus, "30ms", &[]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !finished(&mut driver),
        "the job finished before the partition"
    );
    let old = g.current_leader();
    let mut old_con = g.connect(old);
    let _: String = redis::cmd("RAFT.ISOLATE")
        .arg(1)
        .query(&mut old_con)
        .expect("isolate");
    // The other two elect a new leader.
    let new = wait_for_new_leader(&g, old, "isolated");
    // The old leader acknowledges nothing: a write sent straight to it is refused, not committed.
    assert_write_refused(&mut old_con, "part", "sent to an isolated leader");
    // Nor does it serve a read, however many arrive at once and share its read rounds: each
    // would be stale now that the new leader commits without it.
    let url = g.group.node_url(g.node(old));
    let readers: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(url)
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
                    .expect("connect to the isolated leader");
                con.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let meta = redcount_protocol::JobKeys::new("part").expect("keys").meta;
                (0..2)
                    .map(|_| {
                        redis::cmd("HGET")
                            .arg(&meta)
                            .arg("done")
                            .query::<Option<String>>(&mut con)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for reader in readers {
        for read in reader.join().expect("reader") {
            assert!(read.is_err(), "an isolated leader served a read: {read:?}");
        }
    }
    let _: String = redis::cmd("RAFT.ISOLATE")
        .arg(0)
        .query(&mut old_con)
        .expect("heal");
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    g.assert_replicas_identical();
    // The probe never happened anywhere: no replica recorded it.
    assert_event_nowhere(&g, new, "part", "sent to an isolated leader");
}

#[test]
fn network_partitions_one_way_links_pauses_and_kills_lose_no_acknowledged_commit() {
    // Jepsen-style, short and seeded: the leader cut off from the majority and healed, a leader
    // whose messages to the followers are lost while theirs reach it, no majority anywhere (the
    // leader cut off and a follower killed), and a paused leader while a follower is cut off.
    let mut g = TestGroup::start_behind_proxies(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 300, 1_000, 8_000, 81);
    let (mut driver, out) = start_job(&g, dir.path(), "net", &corpus, "100ms", &["--no-pack"]);
    let mut rng = Rng::new(23);
    let mut done = Vec::new();
    let term = |g: &TestGroup| -> u64 {
        (1..=3)
            .filter_map(|id| g.status(id)?.get("term")?.parse().ok())
            .max()
            .unwrap_or(0)
    };
    let first_term = term(&g);
    std::thread::sleep(Duration::from_millis(1_000));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    while round < 8 && !finished(&mut driver) && Instant::now() < deadline {
        let Some(leader) = g.leader() else {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        };
        let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
        let hold = Duration::from_millis(rng.range(1_200, 2_500));
        match round % 4 {
            0 => {
                g.links.isolate(leader);
                std::thread::sleep(hold);
            }
            1 => {
                for &f in &followers {
                    g.links.link(leader, f, Fault::DropRequests);
                }
                std::thread::sleep(hold);
            }
            2 => {
                g.links.isolate(leader);
                g.kill(followers[0]);
                std::thread::sleep(hold);
                g.spawn(followers[0], false);
            }
            _ => {
                let pid =
                    nix::unistd::Pid::from_raw(g.nodes.pid(leader).expect("leader pid") as i32);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("stop");
                g.links.isolate(followers[0]);
                std::thread::sleep(hold);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("cont");
            }
        }
        g.links.heal();
        done.push(round % 4);
        round += 1;
        std::thread::sleep(Duration::from_millis(rng.range(800, 1_500)));
    }
    g.links.heal();
    let output = wait_success(driver, Duration::from_secs(150), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&output);
    eprintln!("partition rounds {done:?}: {v}");
    assert!(done.len() >= 4, "the job ended after {} rounds", done.len());
    for ((from, to), proxy) in &g.links.0 {
        assert!(
            proxy.bytes() > 0,
            "nothing went from node {from} to {to} through its proxy"
        );
    }
    let last_term = term(&g);
    assert!(
        last_term >= first_term + 3,
        "the faults forced too few elections: term {first_term} -> {last_term}"
    );
    // A worker cut off with a minority leader may lose its leases (it could not reach the serving
    // majority); what may never happen is an acknowledged commit lost.
    assert_eq!(v["recomputed_after_rollback"], 0, "rolled back: {v}");
    assert_eq!(v["recreated"], 0, "job re-run: {v}");
    g.assert_replicas_identical();
}

#[test]
fn a_worker_that_dies_during_a_failover_still_loses_its_tasks_and_only_it() {
    // Leases pause while the group has no leader, so the failover alone takes nothing from the
    // live worker; the worker killed at the same moment loses its tasks one lease after the new
    // leader serves, and the live worker finishes them.
    let mut g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 120, 1_000, 8_000, 78);
    let out = dir.path().join("dies.tsv");
    let url = g.group.url();
    let driver = redcount()
        .args([
            "run",
            "-w",
            "0",
            "--json",
            "--job",
            "dies",
            "--lease",
            "2s",
            "--no-pack",
        ])
        .args(["--speculate-factor", "0", "--out"])
        .arg(&out)
        .arg(&corpus)
        .env("REDIS_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start driver");
    let worker = |name: &str| {
        redcount()
            .args(["worker", "--job", "dies", "--name", name, "--slow", "40ms"])
            .args(["--batch-tasks", "8"])
            .env("REDIS_URL", &url)
            .stderr(Stdio::null())
            .spawn()
            .expect("start worker")
    };
    let mut workers = ChildGuard(vec![worker("doomed"), worker("survivor")]);
    std::thread::sleep(Duration::from_millis(1_500));
    // Kill the doomed worker only at a moment it holds leases: stop it, look at what the
    // coordinator says it holds, and go on only if that is something (a worker between its
    // commit and its next claim holds nothing, and then there is nothing to take over).
    let mut job = redcount_protocol::Job::new(
        redcount_protocol::Link::open(&url, redcount_protocol::LinkOptions::default())
            .expect("url"),
        "dies",
    )
    .expect("job");
    let doomed = nix::unistd::Pid::from_raw(workers.0[0].id() as i32);
    let mut held = 0;
    for _ in 0..100 {
        nix::sys::signal::kill(doomed, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        held = job
            .workers(redcount_protocol::now_ms())
            .expect("workers")
            .iter()
            .filter(|w| w.name == "doomed")
            .map(|w| w.holds.len())
            .sum();
        if held > 0 {
            break;
        }
        nix::sys::signal::kill(doomed, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(held > 0, "the doomed worker never held a task");
    let leader = g.current_leader();
    g.kill(leader);
    let _ = workers.0[0].kill();
    let _ = workers.0[0].wait();
    std::thread::sleep(Duration::from_millis(1_000));
    g.spawn(leader, false);
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&done);
    eprintln!("worker died during a failover: {v}");
    assert!(
        v["redelivered"].as_u64().expect("redelivered") >= held as u64,
        "the dead worker's {held} tasks were never taken over: {v}"
    );
    let records = job.done_records().expect("done records");
    assert!(
        records
            .iter()
            .filter(|r| r.attempts > 1)
            .all(|r| r.worker == "survivor"),
        "a re-delivered task went elsewhere than to the survivor"
    );
    let redelivered = records.iter().filter(|r| r.attempts > 1).count() as u64;
    assert_eq!(
        Some(redelivered),
        v["redelivered"].as_u64(),
        "only the dead worker's tasks (at most its batch of 8) were re-delivered: {v}"
    );
    assert!(redelivered <= 8, "more than the dead worker's batch: {v}");
    g.assert_replicas_identical();
}
