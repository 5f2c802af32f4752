//! Nodes killed, restarted, paused and wiped, one or two at a time, while a job runs: counts exact, nothing recomputed.

use super::*;

#[test]
fn killing_and_restarting_nodes_leader_included_keeps_counts_exact_and_recomputes_nothing() {
    let mut g = TestGroup::start(3, 200);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 500, 1_000, 12_000, 71);
    let (mut driver, out) = start_job(&g, dir.path(), "chaos", &corpus, "40ms", &[]);
    let mut rng = Rng::new(5);
    let (mut kills, mut leader_kills) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(100);
    while !finished(&mut driver) && Instant::now() < deadline && kills < 40 {
        std::thread::sleep(Duration::from_millis(rng.range(500, 2000)));
        // Every other round the leader, otherwise a random node.
        let victim = match (kills % 2 == 0).then(|| g.leader()).flatten() {
            Some(leader) => {
                leader_kills += 1;
                leader
            }
            None => rng.range(1, 4),
        };
        g.kill(victim);
        kills += 1;
        std::thread::sleep(Duration::from_millis(rng.range(200, 800)));
        g.spawn(victim, false);
    }
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&done);
    eprintln!("{kills} node kills ({leader_kills} of the leader): {v}");
    assert!(
        leader_kills >= 3,
        "the job ended before the leader was killed three times"
    );
    assert!(
        v["merges"].as_u64().expect("merges") >= 20,
        "merges ran all through the kills: {v}"
    );
    assert_nothing_recomputed(&v);
    g.assert_replicas_identical();
}

#[test]
fn a_paused_leader_wakes_up_as_a_follower_and_acknowledges_nothing() {
    // SIGSTOP is a leader that freezes (a long GC pause, a stalled VM): it does not know it was
    // replaced, and must not acknowledge anything when it wakes up.
    let g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 150, 1_000, 8_000, 75);
    let (driver, out) = start_job(&g, dir.path(), "pause", &corpus, "30ms", &[]);
    std::thread::sleep(Duration::from_millis(1000));
    let old = g.current_leader();
    let mut old_con = g.connect(old);
    let pid = nix::unistd::Pid::from_raw(g.nodes.pid(old).expect("the leader runs") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let new = wait_for_new_leader(&g, old, "paused");
    std::thread::sleep(Duration::from_millis(1000));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    // The first thing the woken node hears is a write: it must not acknowledge it.
    assert_write_refused(&mut old_con, "pause", "sent to a paused leader");
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    g.assert_replicas_identical();
    assert_event_nowhere(&g, new, "pause", "sent to a paused leader");
}

#[test]
fn five_nodes_survive_two_failures_at_once_leader_included() {
    // 2f+1 = 5 survives f = 2: the leader and another node die together, the other three carry on.
    let mut g = TestGroup::start(5, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 200, 1_000, 8_000, 77);
    let (mut driver, out) = start_job(&g, dir.path(), "five", &corpus, "30ms", &[]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !finished(&mut driver),
        "the job finished before the failures"
    );
    let leader = g.current_leader();
    let other = (1..=5).find(|&id| id != leader).expect("another node");
    g.kill(leader);
    g.kill(other);
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    g.spawn(leader, false);
    g.spawn(other, false);
    g.assert_replicas_identical();
}

#[test]
fn with_two_of_three_nodes_down_the_job_stalls_and_resumes_when_one_returns() {
    let mut g = TestGroup::start(3, 2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 200, 1_000, 8_000, 72);
    // 2 s leases and a longer outage: lease time stops while the group has no majority (nothing is
    // applied), so the held tasks stay with their live workers.
    let (mut driver, out) = start_job(&g, dir.path(), "stall", &corpus, "30ms", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !finished(&mut driver),
        "the job finished before the nodes went down"
    );
    let leader = g.current_leader();
    let other = (1..=3).find(|&id| id != leader).expect("a follower");
    let survivor = (1..=3)
        .find(|&id| id != leader && id != other)
        .expect("a survivor");
    g.kill(leader);
    g.kill(other);
    std::thread::sleep(Duration::from_millis(500));
    let before = g.applied(survivor).expect("survivor answers");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        g.applied(survivor),
        Some(before),
        "a lone node applied new entries: nothing may commit without a majority"
    );
    assert_ne!(g.leader(), Some(survivor), "a lone node must not lead");
    assert!(
        !finished(&mut driver),
        "the job finished without a majority"
    );
    g.spawn(other, false);
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    g.spawn(leader, false);
    g.assert_replicas_identical();
}

#[test]
fn a_wiped_node_rejoins_from_a_snapshot() {
    // Snapshots every 10 entries: the log a wiped node would need is long gone.
    let mut g = TestGroup::start(3, 10);
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 200, 1_000, 8_000, 73);
    let wiped = 3;
    g.kill(wiped);
    std::fs::remove_dir_all(&g.node(wiped).dir).expect("wipe the node");
    let (driver, out) = start_job(&g, dir.path(), "wipe", &corpus, "0ms", &[]);
    let done = wait_success(driver, Duration::from_secs(120), "driver");
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    assert_nothing_recomputed(&json(&done));
    // The others compacted their logs past the start.
    let leader = g.current_leader();
    let snapshot = g.status(leader).expect("status")["snapshot_index"].clone();
    assert_ne!(snapshot, "none", "the leader took no snapshot");
    g.spawn(wiped, false);
    g.assert_replicas_identical();
    let s = g.status(wiped).expect("the wiped node answers");
    assert_ne!(
        s["snapshot_index"], "none",
        "it caught up from a snapshot: {s:?}"
    );
}
