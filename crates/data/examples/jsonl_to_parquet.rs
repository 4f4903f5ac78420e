//! Writes JSONL records from standard input as a Parquet file of string columns (the columns of
//! the first record; a non-string value is stored as its JSON text). Used by `scripts/fuzz.sh`
//! to make Parquet seeds from the shared data:
//!
//! `cargo run --release -p rewardkit-data --example jsonl_to_parquet -- out.parquet < rows.jsonl`

use std::io::BufRead;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: jsonl_to_parquet OUT.parquet")?;
    let mut rows: Vec<serde_json::Map<String, serde_json::Value>> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if !line.trim().is_empty() {
            rows.push(serde_json::from_str(&line)?);
        }
    }
    let columns: Vec<String> = rows.first().ok_or("no rows")?.keys().cloned().collect();
    let fields: String = columns
        .iter()
        .map(|name| format!("OPTIONAL BYTE_ARRAY {name} (UTF8);"))
        .collect();
    let schema = Arc::new(parse_message_type(&format!(
        "message schema {{ {fields} }}"
    ))?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut writer = SerializedFileWriter::new(std::fs::File::create(out)?, schema, props)?;
    let mut group = writer.next_row_group()?;
    let mut i = 0;
    while let Some(mut col) = group.next_column()? {
        let mut values = Vec::new();
        let mut levels = Vec::new();
        for row in &rows {
            match row.get(&columns[i]) {
                None | Some(serde_json::Value::Null) => levels.push(0),
                Some(serde_json::Value::String(s)) => {
                    values.push(ByteArray::from(s.as_str()));
                    levels.push(1);
                }
                Some(other) => {
                    values.push(ByteArray::from(other.to_string().as_str()));
                    levels.push(1);
                }
            }
        }
        col.typed::<ByteArrayType>()
            .write_batch(&values, Some(&levels), None)?;
        col.close()?;
        i += 1;
    }
    group.close()?;
    writer.close()?;
    Ok(())
}
