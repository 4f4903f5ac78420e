//! Parquet, as HF datasets publish it (snappy-compressed, UTF-8 string columns).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use rewardkit_data::{load, Format, LoadOptions, Position, Text};

fn write_parquet(path: &std::path::Path, columns: &[(&str, Vec<&str>)]) {
    let fields: String = columns
        .iter()
        .map(|(name, _)| format!("REQUIRED BYTE_ARRAY {name} (UTF8);"))
        .collect();
    let schema = Arc::new(parse_message_type(&format!("message schema {{ {fields} }}")).unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut i = 0;
    while let Some(mut col) = group.next_column().unwrap() {
        let values: Vec<ByteArray> = columns[i].1.iter().map(|s| ByteArray::from(*s)).collect();
        col.typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        col.close().unwrap();
        i += 1;
    }
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_rows_are_read_with_row_numbers() {
    let dir = tempfile::tempdir().unwrap();
    // The extension is irrelevant: the PAR1 magic decides.
    let path = dir.path().join("train-00000-of-00001.parquet");
    write_parquet(
        &path,
        &[
            ("prompt", vec!["What is 2+2?", "Capital of France?", "Hi"]),
            ("chosen", vec!["4", "Paris", "same"]),
            ("rejected", vec!["5", "Lyon", "same"]),
        ],
    );
    let data = load(&[path], &LoadOptions::default()).unwrap();
    assert_eq!(data.report.files[0].format, Format::Trl);
    assert_eq!(data.report.rows_read, 3);
    assert_eq!(data.pairs.len(), 2);
    assert_eq!(data.pairs[1].chosen, Text::Plain("Paris".into()));
    assert_eq!(data.pairs[1].location.position, Position::Row(2));
    let dropped = &data.report.dropped_rows[0];
    assert_eq!(dropped.location.position, Position::Row(3));
    assert!(dropped.location.to_string().ends_with(":row 3"));
}

#[test]
fn parquet_missing_column_names_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.parquet");
    write_parquet(
        &path,
        &[
            ("chosen", vec!["a"]),
            ("rejected", vec!["b"]),
            ("prompt", vec!["p"]),
        ],
    );
    let data = load(&[&path], &LoadOptions::default()).unwrap();
    assert_eq!(data.pairs.len(), 1);
    let path2 = dir.path().join("y.parquet");
    write_parquet(
        &path2,
        &[("response1", vec!["a"]), ("response2", vec!["b"])],
    );
    let msg = load(&[&path2], &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        format!(
            "{}:row 1: missing field `instruction` (or `prompt`)",
            path2.display()
        )
    );
}

#[test]
fn parquet_that_cannot_be_seeked_is_read_from_memory() {
    // Gzip-compressed Parquet is a stream, like a pipe: it is read into memory, not refused.
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("p.parquet");
    write_parquet(
        &plain,
        &[("chosen", vec!["a", "c"]), ("rejected", vec!["b", "d"])],
    );
    let gz = dir.path().join("p.parquet.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::Write::write_all(&mut enc, &std::fs::read(&plain).unwrap()).unwrap();
    enc.finish().unwrap();
    let data = load(&[&gz], &LoadOptions::default()).unwrap();
    assert_eq!(data.report.rows_read, 2);
    assert_eq!(data.pairs[1].chosen, Text::Plain("c".into()));
    assert_eq!(data.pairs[1].location.position, Position::Row(2));
}

#[test]
fn a_malformed_parquet_file_found_by_fuzzing_is_an_error_not_a_panic() {
    // fuzz/parquet crash e83aa62f: the parquet crate panics ("Decoder for dict should have been
    // set") on this file; reading it must give a Parquet error naming the file.
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz-parquet-dict-decoder.parquet");
    let err = load(&[&path], &LoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, rewardkit_data::DataError::Parquet { .. }),
        "{msg}"
    );
    assert!(
        msg.starts_with(&format!("{}: cannot read Parquet", path.display())),
        "{msg}"
    );
}
