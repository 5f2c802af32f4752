//! The oracle: counts computed without any redcount code, the way docs/PROTOCOL.md defines them
//! (Python's `bytes.split()`: the six ASCII whitespace bytes separate words; case and bytes kept).

use std::collections::BTreeMap;
use std::path::Path;

/// word -> count, ordered for readable diffs.
pub type Counts = BTreeMap<Vec<u8>, u64>;

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn add_words(text: &[u8], counts: &mut Counts) {
    for word in text.split(|&b| is_ws(b)).filter(|w| !w.is_empty()) {
        *counts.entry(word.to_vec()).or_insert(0) += 1;
    }
}

/// Oracle count of plain-text files.
pub fn oracle_count<P: AsRef<Path>>(files: &[P]) -> Counts {
    let mut counts = Counts::new();
    for f in files {
        let data = std::fs::read(f.as_ref())
            .unwrap_or_else(|e| panic!("oracle: read {}: {e}", f.as_ref().display()));
        add_words(&data, &mut counts);
    }
    counts
}

/// Oracle count of one column of RFC 4180 CSV files (header row), with its own small parser.
pub fn oracle_csv_count<P: AsRef<Path>>(files: &[P], column: &str) -> Counts {
    let mut counts = Counts::new();
    for f in files {
        let data = std::fs::read(f.as_ref())
            .unwrap_or_else(|e| panic!("oracle: read {}: {e}", f.as_ref().display()));
        let records = parse_csv(&data);
        let Some(header) = records.first() else {
            continue;
        };
        let index = header
            .iter()
            .position(|h| h == column.as_bytes())
            .expect("oracle: column in header");
        for record in &records[1..] {
            add_words(&record[index], &mut counts);
        }
    }
    counts
}

fn parse_csv(data: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), Vec::new());
    let (mut quoted, mut i) = (false, 0);
    while i < data.len() {
        let b = data[i];
        if quoted {
            if b == b'"' && data.get(i + 1) == Some(&b'"') {
                field.push(b'"');
                i += 1;
            } else if b == b'"' {
                quoted = false;
            } else {
                field.push(b);
            }
        } else {
            match b {
                b'"' => quoted = true,
                b',' => record.push(std::mem::take(&mut field)),
                b'\n' => {
                    if field.last() == Some(&b'\r') {
                        field.pop();
                    }
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                _ => field.push(b),
            }
        }
        i += 1;
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// Reads a `--out` file (`word<TAB>count` lines) and checks its order: count descending, then word
/// bytes ascending.
pub fn read_out_file(path: &Path) -> Counts {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut counts = Counts::new();
    let mut previous: Option<(u64, Vec<u8>)> = None;
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let tab = line
            .iter()
            .rposition(|&b| b == b'\t')
            .expect("a tab in every line");
        let word = line[..tab].to_vec();
        let n: u64 = std::str::from_utf8(&line[tab + 1..])
            .expect("ascii count")
            .parse()
            .expect("a number");
        if let Some((pn, pw)) = &previous {
            assert!(
                *pn > n || (*pn == n && *pw < word),
                "out file is not sorted at {:?}",
                String::from_utf8_lossy(&word)
            );
        }
        previous = Some((n, word.clone()));
        assert!(
            counts.insert(word, n).is_none(),
            "a word appears twice in the out file"
        );
    }
    counts
}

/// Panics with the first differences when the two counts are not exactly equal.
pub fn assert_same_counts(expected: &Counts, got: &Counts) {
    if expected == got {
        return;
    }
    let mut diffs = Vec::new();
    for (w, n) in expected {
        let g = got.get(w).copied().unwrap_or(0);
        if g != *n {
            diffs.push(format!(
                "{:?}: expected {n}, got {g}",
                String::from_utf8_lossy(w)
            ));
        }
    }
    for (w, g) in got {
        if !expected.contains_key(w) {
            diffs.push(format!(
                "{:?}: expected 0, got {g}",
                String::from_utf8_lossy(w)
            ));
        }
    }
    panic!(
        "counts differ from the oracle in {} words ({} expected, {} got); first ones:\n{}",
        diffs.len(),
        expected.len(),
        got.len(),
        diffs
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
