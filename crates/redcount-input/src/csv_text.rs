//! CSV inputs: RFC 4180 with a header row; one column (by name) holds the text to count, the shape of
//! the course's tweet dumps (`tweet_id,author_id,inbound,created_at,text,...`). Fields are bytes, so
//! non-UTF-8 text is counted as it is.

use std::path::Path;

use crate::InputError;

/// Calls `f` with the `column` field of every record of `data`.
pub fn for_each_field(
    path: &Path,
    data: &[u8],
    column: &str,
    mut f: impl FnMut(&[u8]),
) -> Result<(), InputError> {
    let malformed = |reason: String| InputError::MalformedCsv {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(data);
    let headers = reader
        .byte_headers()
        .map_err(|e| malformed(e.to_string()))?
        .clone();
    let Some(index) = headers.iter().position(|h| h == column.as_bytes()) else {
        let names: Vec<String> = headers
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect();
        return Err(malformed(format!(
            "no column '{column}' in the header (columns: {})",
            names.join(", ")
        )));
    };
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => f(record.get(index).unwrap_or(b"")),
            Ok(false) => return Ok(()),
            Err(e) => return Err(malformed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(data: &[u8]) -> Result<Vec<Vec<u8>>, InputError> {
        let mut out = Vec::new();
        for_each_field(Path::new("t.csv"), data, "text", |f| out.push(f.to_vec()))?;
        Ok(out)
    }

    #[test]
    fn quoted_fields_hold_commas_quotes_and_newlines() {
        let data = b"id,text,n\n1,\"a, b\",2\n2,\"say \"\"hi\"\"\nthere\",3\n3,plain,4";
        let got = fields(data).expect("parses");
        assert_eq!(
            got,
            vec![
                b"a, b".to_vec(),
                b"say \"hi\"\nthere".to_vec(),
                b"plain".to_vec()
            ]
        );
    }

    #[test]
    fn ragged_rows_and_missing_columns_are_malformed() {
        let err = fields(b"id,text\n1,a\n2,b,extra\n").expect_err("ragged");
        assert!(err.to_string().contains("t.csv: malformed CSV"), "{err}");
        let err = fields(b"id,body\n1,a\n").expect_err("no column");
        assert!(err.to_string().contains("no column 'text'"), "{err}");
    }
}
