//! Names and bytes: odd but valid bytes, file names that are not UTF-8, the same file under several names, words too long to keep.

use super::*;

#[test]
fn odd_but_valid_bytes_are_counted_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().join("in");
    std::fs::create_dir(&d).expect("mkdir");
    std::fs::write(d.join("empty.txt"), b"").expect("write");
    std::fs::write(d.join("no-newline.txt"), b"last line\twithout newline").expect("write");
    std::fs::write(
        d.join("latin1.txt"),
        b"caf\xe9 na\xefve \xff\xfe caf\xe9\r\n",
    )
    .expect("write");
    let mut binary = Vec::new();
    let mut rng = redcount_testkit::Rng::new(1);
    for _ in 0..200_000 {
        binary.push(rng.next_u64() as u8);
    }
    std::fs::write(d.join("binary.bin"), &binary).expect("write");
    // One enormous line (3 MB, no newline) and one enormous word (2 MB, no whitespace at all).
    let mut line = Vec::new();
    while line.len() < 3_000_000 {
        line.extend_from_slice(b"word ");
        line.extend_from_slice(format!("w{} ", line.len() % 9973).as_bytes());
    }
    std::fs::write(d.join("one-line.txt"), &line).expect("write");
    let mut word = vec![b'x'; 2_000_000];
    word.extend_from_slice(b" and after");
    std::fs::write(d.join("one-word.txt"), &word).expect("write");
    // Random bytes hold NULs: counted only when asked (by default such an input is skipped).
    let got = count_with(
        dir.path(),
        &[&d],
        &["-w", "3", "--split-bytes", "64KiB", "--binary", "count"],
    );
    assert_same_counts(&oracle_count(&files_below(&d)), &got);
    assert_eq!(
        got.get(&vec![b'x'; 2_000_000]),
        Some(&1),
        "the enormous word is one word"
    );
}

#[test]
fn file_names_that_are_not_utf8_are_counted_and_shown_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).expect("mkdir");
    let odd = corpus.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&odd, "hello world hello\n").expect("write");
    std::fs::write(corpus.join("plain.txt"), "plain words\n").expect("write");
    let files = files_below(&corpus);
    for pack in [&[][..], &["--no-pack"][..]] {
        let got = count_with(dir.path(), &[&corpus], pack);
        assert_same_counts(&oracle_count(&files), &got);
    }
    // Failed, it is named with its bytes escaped.
    std::fs::write(&odd, "a,\"b\n").expect("write");
    let out = job()
        .arg("--no-pack")
        .flag("--format", "csv")
        .json()
        .input(&corpus)
        .output();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let paths: Vec<&str> = v["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("caf\\xe9.txt")),
        "{paths:?}"
    );
}

#[test]
fn each_file_is_counted_once_however_it_is_named_or_linked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let top = dir.path().join("top");
    let real = dir.path().join("real");
    std::fs::create_dir_all(top.join("sub")).expect("mkdir");
    std::fs::create_dir_all(&real).expect("mkdir");
    std::fs::write(real.join("a.txt"), "one two\n").expect("write");
    std::fs::write(top.join("b.txt"), "three\n").expect("write");
    std::fs::write(top.join("sub/c.txt"), "four five\n").expect("write");
    let link = |to: &std::path::Path, at: &str| {
        std::os::unix::fs::symlink(to, top.join(at)).expect("symlink")
    };
    link(&real, "real-link");
    link(&top.join("sub"), "sub-link");
    link(&top.join("b.txt"), "b-link.txt");
    link(&top, "sub/back-to-top");
    let b = top.join("b.txt").display().to_string();
    let out = job().json().input(&top).input(&b).input(&b).output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["inputs_failed"], 0, "{v}");
    let mut got: Vec<(String, u64)> = v["top"]
        .as_array()
        .expect("top")
        .iter()
        .map(|e| {
            (
                e["word"].as_str().unwrap_or("").to_string(),
                e["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, u64)> = ["five", "four", "one", "three", "two"]
        .iter()
        .map(|w| (w.to_string(), 1))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_word_longer_than_redcount_keeps_fails_its_input_fast_and_the_rest_is_exact() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).expect("mkdir");
    std::fs::write(corpus.join("a.txt"), "some words here\n").expect("write");
    let huge = corpus.join("huge.txt");
    let mut f = std::fs::File::create(&huge).expect("create");
    f.write_all(b"before ").expect("write");
    let block = vec![b'x'; 1 << 20];
    for _ in 0..70 {
        f.write_all(&block).expect("write");
    }
    f.write_all(b" after\n").expect("write");
    drop(f);
    let out_file = dir.path().join("out.tsv");
    let out = job().json().out(&out_file).input(&corpus).output();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let failed = v["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("more than 64 MiB"),
        "{failed:?}"
    );
    // Everything but the range holding the huge word is counted: `after` lies past its end.
    let got = read_out_file(&out_file);
    let mut expected = oracle_count(&[corpus.join("a.txt")]);
    for w in ["before", "after"] {
        if let Some(n) = got.get(w.as_bytes()) {
            *expected.entry(w.as_bytes().to_vec()).or_default() += n;
        }
    }
    assert_same_counts(&expected, &got);
}
