//! Reading SFT rows from files: JSONL (or a JSON array, gzip, Parquet), one object per row with
//! `prompt` and `response` strings (other fields are ignored). A malformed row stops the read
//! with its file and line.

use std::path::Path;

use rewardkit_data::{for_each_record, text_field, DataError, RowError, RowErrorKind, Text};

use crate::sft::SftRow;

/// The rows of `path`; a file without rows is an error.
pub fn read_sft_rows(path: &Path) -> Result<Vec<SftRow>, DataError> {
    let mut rows = Vec::new();
    for_each_record(path, |record| -> Result<(), DataError> {
        let (location, obj) = record.into_result()?;
        let plain = |field: &str| match text_field(&obj, field, true)? {
            Text::Plain(s) => Ok(s),
            Text::Chat(_) => Err(RowErrorKind::InvalidValue {
                field: field.into(),
                message: "a message list; SFT rows need plain strings".into(),
            }),
        };
        let row = plain("prompt").and_then(|prompt| {
            Ok(SftRow {
                prompt,
                response: plain("response")?,
            })
        });
        rows.push(row.map_err(|kind| RowError { location, kind })?);
        Ok(())
    })?;
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_and_bad_ones_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rows.jsonl");
        std::fs::write(
            &p,
            "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"c\"}\n",
        )
        .unwrap();
        let e = read_sft_rows(&p).unwrap_err().to_string();
        assert!(e.contains("rows.jsonl:2") && e.contains("response"), "{e}");
        std::fs::write(&p, "{\"prompt\": \"a\", \"response\": \"b\", \"id\": 1}\n").unwrap();
        assert_eq!(
            read_sft_rows(&p).unwrap(),
            vec![SftRow {
                prompt: "a".into(),
                response: "b".into()
            }]
        );
    }
}
