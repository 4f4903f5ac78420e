//! Input that real files contain and that used to be misread: a byte-order mark, a truncated
//! gzip, bare `NaN`, a key given twice.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use common::{file, gz_file};
use rewardkit_data::{load, DataError, LoadOptions, Position};

fn opts() -> LoadOptions {
    LoadOptions::default()
}

const ROW: &str = r#"{"prompt": "p", "chosen": "a", "rejected": "b"}"#;

#[test]
fn a_byte_order_mark_is_skipped_in_jsonl_json_and_gzip() {
    let (_d, path) = file("bom.jsonl", &format!("\u{feff}{ROW}\n{ROW}x\n"));
    // The BOM is not part of line 1 (which parses); line 2 is broken and named as line 2.
    let msg = load(&[&path], &opts()).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}:2: invalid JSON", path.display())),
        "{msg}"
    );
    let (_d, path) = file("bom.json", &format!("\u{feff}[\n{ROW}\n]"));
    let data = load(&[&path], &opts()).unwrap();
    assert_eq!(data.pairs.len(), 1);
    assert_eq!(data.pairs[0].location.position, Position::Line(2));
    let (_d, path) = gz_file("bom.jsonl.gz", &format!("\u{feff}{ROW}\n"));
    assert_eq!(load(&[&path], &opts()).unwrap().pairs.len(), 1);
}

#[test]
fn a_truncated_gzip_is_bad_data_naming_the_file() {
    let body: String = (0..2000)
        .map(|i| format!("{{\"chosen\": \"a{i}\", \"rejected\": \"b{i}\"}}\n"))
        .collect();
    let (_d, path) = gz_file("rows.jsonl.gz", &body);
    let bytes = std::fs::read(&path).unwrap();
    for cut in [bytes.len() / 2, bytes.len() - 4, 12] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = load(&[&path], &opts()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, DataError::Corrupt { .. }),
            "cut at {cut}: {msg}"
        );
        assert!(
            msg.starts_with(&format!("{}: damaged or truncated", path.display())),
            "{msg}"
        );
    }
}

#[test]
fn bare_nan_and_infinity_are_named_with_file_and_line() {
    for (value, word) in [
        ("NaN", "NaN"),
        ("-Infinity", "-Infinity"),
        ("Infinity", "Infinity"),
    ] {
        let (_d, path) = file(
            "m.jsonl",
            &format!("{ROW}\n{{\"chosen\": \"a\", \"rejected\": \"b\", \"margin\": {value}}}\n"),
        );
        let msg = load(&[&path], &opts()).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!(
                "{}:2: invalid JSON: {word} is not valid JSON",
                path.display()
            )),
            "{msg}"
        );
        // In a JSON array the whole file fails to parse, and the line is named the same way.
        let (_d, path) = file(
            "m.json",
            &format!("[{ROW},\n{{\"chosen\": \"a\", \"rejected\": \"b\", \"margin\": {value}}}]"),
        );
        let msg = load(&[&path], &opts()).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!(
                "{}:2: invalid JSON: {word} is not valid JSON",
                path.display()
            )),
            "{msg}"
        );
    }
}

#[test]
fn a_duplicate_key_is_an_error_naming_key_and_line() {
    let (_d, path) = file(
        "dup.jsonl",
        &format!("{ROW}\n{{\"chosen\": \"a\", \"rejected\": \"b\", \"rejected\": \"c\"}}\n"),
    );
    let msg = load(&[&path], &opts()).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:2: invalid JSON: duplicate key `rejected`",
            path.display()
        )),
        "{msg}"
    );
    // With --skip-invalid it is a counted drop, like any malformed row.
    let skip = LoadOptions {
        skip_invalid: true,
        ..opts()
    };
    let data = load(&[&path], &skip).unwrap();
    assert_eq!((data.report.rows_read, data.report.pairs), (2, 1));
    // Inside a JSON array too, and in nested objects.
    let (_d, path) = file(
        "dup.json",
        "[\n{\"chosen\": [{\"role\": \"u\", \"content\": \"x\", \"content\": \"y\"}], \"rejected\": \"b\"}\n]",
    );
    let msg = load(&[&path], &opts()).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:2: invalid JSON: duplicate key `content`",
            path.display()
        )),
        "{msg}"
    );
}
