//! What a file holds: binary files skipped by name, words escaped for a terminal, gzip, zstd and standard input.

use super::*;

#[test]
fn binary_inputs_are_skipped_by_name_and_words_reach_a_terminal_escaped_and_cut() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).expect("mkdir");
    let text = corpus.join("a.txt");
    let long = "y".repeat(10_000);
    let mut body = b"plain words \x1b[31mred \xff\xfe a\\b plain ".to_vec();
    body.extend_from_slice(long.as_bytes());
    body.extend_from_slice(b" words\n");
    std::fs::write(&text, &body).expect("write text");
    // A binary input (a NUL early on) large enough to be split into several tasks: every range of
    // it is told binary by its head.
    let binary = corpus.join("tool.bin");
    let mut bin = b"\x7fELF\x02\x01\x01\x00\x00".to_vec();
    while bin.len() < 40_000 {
        bin.extend_from_slice(b"symbol table entry with words ");
    }
    std::fs::write(&binary, &bin).expect("write binary");
    let input = corpus.display().to_string();
    let out = dir.path().join("out.tsv");

    let table = job()
        .flag("--split-bytes", "8KiB")
        .arg("--no-pack")
        .out(&out)
        .input(&input)
        .output();
    assert_eq!(
        table.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert_same_counts(
        &oracle_count(std::slice::from_ref(&text)),
        &read_out_file(&out),
    );
    let shown = String::from_utf8_lossy(&table.stdout);
    assert!(
        !table.stdout.contains(&0x1b),
        "an escape byte reached the terminal: {shown}"
    );
    assert!(
        shown.contains("\\x1b[31mred") && shown.contains("\\xff\\xfe"),
        "{shown}"
    );
    assert!(
        shown.contains("a\\\\b"),
        "a backslash is shown doubled: {shown}"
    );
    let long_line = shown
        .lines()
        .find(|l| l.contains("yyyy"))
        .expect("the long word's row");
    assert!(
        long_line.len() < 120 && long_line.contains("(10000 bytes)"),
        "{long_line}"
    );
    let failed: Vec<&str> = shown.lines().filter(|l| l.starts_with("failed:")).collect();
    assert!(!failed.is_empty(), "{shown}");
    for line in &failed {
        assert!(
            line.contains("tool.bin")
                && line.contains("looks binary")
                && line.contains("--binary count"),
            "{line}"
        );
    }

    let json_run = job().json().top(20).input(&input).output();
    let v = json(&json_run);
    let words: Vec<&str> = v["top"]
        .as_array()
        .expect("top")
        .iter()
        .filter_map(|e| e["word"].as_str())
        .collect();
    assert!(
        words.contains(&"\\xff\\xfe") && words.contains(&"a\\\\b"),
        "{words:?}"
    );
    assert!(words.contains(&long.as_str()), "JSON keeps the whole word");
    assert!(
        v["word_escapes"]
            .as_str()
            .is_some_and(|s| s.contains("\\xNN")),
        "{v}"
    );

    let counted = job()
        .flag("--binary", "count")
        .out(&out)
        .input(&input)
        .output();
    assert!(
        counted.status.success(),
        "{}",
        String::from_utf8_lossy(&counted.stderr)
    );
    assert_same_counts(&oracle_count(&[text, binary]), &read_out_file(&out));
}

#[test]
fn gzip_and_zstd_inputs_and_standard_input_are_counted_exactly() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let plain = dir.path().join("plain");
    let files = redcount_testkit::corpus::write_text_corpus(&plain, 4, 150_000, 300_000, 61);
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).expect("mkdir");
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    };
    // Larger than --split-bytes below: a compressed input is never split.
    std::fs::write(
        inputs.join("a.txt.gz"),
        gz(&std::fs::read(&files[0]).expect("read")),
    )
    .expect("write");
    let zst = ruzstd::encoding::compress_to_vec(
        &std::fs::read(&files[1]).expect("read")[..],
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    std::fs::write(inputs.join("b.log.zst"), zst).expect("write");
    std::fs::copy(&files[2], inputs.join("c.txt")).expect("copy");
    let csv = dir.path().join("d.csv");
    std::fs::write(
        &csv,
        "id,text\n1,\"hello, compressed world\"\n2,hello again\n",
    )
    .expect("csv");
    std::fs::write(
        inputs.join("d.csv.gz"),
        gz(&std::fs::read(&csv).expect("read")),
    )
    .expect("write");
    let mut expected = oracle_count(&files[..4]);
    for (w, n) in redcount_testkit::oracle_csv_count(&[&csv], "text") {
        *expected.entry(w).or_default() += n;
    }

    let out = dir.path().join("out.tsv");
    let mut driver = job()
        .arg("--no-progress")
        .flag("--split-bytes", "64KiB")
        .out(&out)
        .input(&inputs)
        .input("-")
        .command()
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("start redcount");
    let fourth = std::fs::read(&files[3]).expect("read");
    let mut stdin = driver.stdin.take().expect("stdin");
    stdin.write_all(&fourth).expect("pipe");
    drop(stdin);
    let done = wait_output(driver, Duration::from_secs(120), "run with stdin");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_same_counts(&expected, &read_out_file(&out));

    // A broken stream fails by name; the rest is exact.
    std::fs::write(inputs.join("broken.gz"), b"\x1f\x8b not really gzip").expect("write");
    let broken = job().out(&out).input(&inputs).output();
    assert_eq!(broken.status.code(), Some(3));
    let said = String::from_utf8_lossy(&broken.stdout);
    assert!(
        said.contains("broken.gz") && said.contains("not a valid Gzip stream"),
        "{said}"
    );
    let mut without_stdin = oracle_count(&files[..3]);
    for (w, n) in redcount_testkit::oracle_csv_count(&[&csv], "text") {
        *without_stdin.entry(w).or_default() += n;
    }
    assert_same_counts(&without_stdin, &read_out_file(&out));
}
