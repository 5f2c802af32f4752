//! Reads of the result: top-K ties and snapshots of `rc_top`, the `--aggregate-in redis` job's top
//! (the default's top is read from partition blobs: partials.rs).

use super::*;

#[test]
fn top_breaks_ties_by_word_bytes_ascending() {
    let (_server, mut job) = setup_zincrby(1, 3);
    claim(&mut job, T0, "w", 1);
    let words: &[(&[u8], u64)] = &[(b"b", 2), (b"a", 2), (b"c", 2), (b"z", 5), (b"y", 1)];
    commit(&mut job, T0 + 1, "w", &["1-0"], words);
    let top = job.top(3).expect("top");
    let got: Vec<(&[u8], u64)> = top.iter().map(|(w, n)| (&w[..], *n)).collect();
    assert_eq!(got, vec![(&b"z"[..], 5), (&b"a"[..], 2), (&b"b"[..], 2)]);
    assert_eq!(job.all_counts().expect("all").len(), 5);
}

#[test]
fn top_is_one_snapshot_while_commits_move_the_cutoff() {
    // Words tied at the cutoff keep moving above it: a top read in two steps (the head, then the
    // cutoff's tie group) saw fewer than k words whenever a commit landed between them.
    let (server, mut job) = setup_zincrby(1, 3);
    let counts = JobKeys::new("t").expect("keys").counts;
    let mut con = redis::Client::open(server.url().as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    for w in ["a", "b", "c", "d", "e", "f"] {
        add_one(&mut con, &counts, w);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let counts = counts.clone();
        std::thread::spawn(move || {
            let mut rng = 7u64;
            let words = ["a", "b", "c", "d", "e", "f"];
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 200_000 {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let w = words[(rng >> 33) as usize % words.len()];
                add_one(&mut con, &counts, w);
                n += 1;
            }
        })
    };
    for _ in 0..3_000 {
        let top = job.top(3).expect("top");
        assert_eq!(top.len(), 3, "a top of 3 from 6 words: {top:?}");
        assert!(
            top.windows(2)
                .all(|p| p[0].1 > p[1].1 || (p[0].1 == p[1].1 && p[0].0 < p[1].0)),
            "out of order: {top:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
}
