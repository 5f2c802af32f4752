//! A stream whose Raft leader is killed.

use super::*;

#[test]
fn a_stream_survives_its_raft_leader_being_killed_and_marks_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gdir = dir.path().join("g");
    let gdir_s = gdir.to_str().expect("utf-8").to_string();
    let up = run_ok(&["cluster", "up", "--raft", "3", "--dir", &gdir_s]);
    let url = String::from_utf8_lossy(&up.stdout).trim().to_string();
    struct Down(PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = redcount_server::raft_group::group_down(&self.0);
        }
    }
    let _down = Down(gdir.clone());
    let corpus = dir.path().join("in");
    let files = write_text_corpus(&corpus, 60, 500, 4_000, 76);
    let (out, lat) = (dir.path().join("out.tsv"), dir.path().join("lat.csv"));
    let o = run_ok(&[
        "stream",
        "--rate",
        "10",
        "--files",
        "60",
        "-w",
        "2",
        "--json",
        "--redis",
        &url,
        "--speculate-factor",
        "0",
        "--lease-ms",
        "2s",
        "--kill-raft-leader",
        "1500ms",
        "--raft-dir",
        &gdir_s,
        "--out",
        out.to_str().expect("utf-8"),
        "--latency-out",
        lat.to_str().expect("utf-8"),
        corpus.to_str().expect("utf-8"),
    ]);
    assert_same_counts(&oracle_count(&files), &read_out_file(&out));
    let v = json(&o);
    assert_eq!(v["latency"]["count"], 60, "one latency row per file: {v}");
    assert_nothing_recomputed(&v);
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["kill-raft-leader", "restart-raft-node"], "{v}");
    let group = Group::load(&gdir).expect("group");
    assert!(
        group.nodes.iter().all(|n| group.pid(n).is_some()),
        "the killed node runs again"
    );
}
