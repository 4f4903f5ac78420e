//! Reading records (JSON objects) from JSONL, gzip-compressed JSONL, JSON arrays and Parquet,
//! each with the location it came from. Format is recognised from the content (gzip and Parquet
//! magic bytes, `[` for a JSON array), not only from the file name.
//!
//! Blank lines in JSONL are not records and are skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{DataError, RowError, RowErrorKind};
use crate::types::Location;

/// One record and where it was read from. `object` is `Err` for a malformed record.
#[derive(Debug)]
pub struct Record {
    pub location: Location,
    pub object: Result<Map<String, Value>, RowErrorKind>,
}

impl Record {
    fn new(location: Location, value: Result<Value, RowErrorKind>) -> Self {
        let object = value.and_then(|v| match v {
            Value::Object(m) => Ok(m),
            other => Err(RowErrorKind::NotAnObject(crate::error::json_type(&other))),
        });
        Record { location, object }
    }

    /// The object, or the error with its location.
    pub fn into_result(self) -> Result<(Location, Map<String, Value>), RowError> {
        match self.object {
            Ok(m) => Ok((self.location, m)),
            Err(kind) => Err(RowError {
                location: self.location,
                kind,
            }),
        }
    }
}

/// The physical layout of a records file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    JsonLines,
    JsonArray,
    Parquet,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const PARQUET_MAGIC: &[u8; 4] = b"PAR1";

/// Calls `f` on every record of `path`, in file order. Stops at the first error `f` returns.
/// File-level problems (unreadable file, broken gzip, a JSON array that does not parse) are
/// returned as `DataError`; a malformed record is passed to `f` as `Record { object: Err(..) }`.
pub fn for_each_record<E: From<DataError>>(
    path: &Path,
    mut f: impl FnMut(Record) -> Result<(), E>,
) -> Result<FileKind, E> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).map_err(|e| DataError::io(path, e))?;
    drop(file);
    if n == 4 && &magic == PARQUET_MAGIC {
        read_parquet(path, &mut f)?;
        return Ok(FileKind::Parquet);
    }
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader: Box<dyn Read> = if n >= 2 && magic[..2] == GZIP_MAGIC {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    // Peek at the first non-whitespace byte: `[` means one JSON array, anything else JSONL.
    // Whole buffers of leading whitespace are consumed; the lines they held are counted.
    let mut lines_before = 0u64;
    let first = loop {
        let buf = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
        if buf.is_empty() {
            break None;
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break Some(buf[i]),
            None => {
                lines_before += buf.iter().filter(|&&b| b == b'\n').count() as u64;
                let len = buf.len();
                reader.consume(len);
            }
        }
    };
    match first {
        Some(b'[') => {
            read_json_array(path, reader, lines_before, &mut f)?;
            Ok(FileKind::JsonArray)
        }
        _ => {
            read_json_lines(path, reader, lines_before, &mut f)?;
            Ok(FileKind::JsonLines)
        }
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_json_lines<E: From<DataError>>(
    path: &Path,
    mut reader: impl BufRead,
    lines_before: u64,
    f: &mut impl FnMut(Record) -> Result<(), E>,
) -> Result<(), E> {
    let mut line_no = lines_before;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let location = Location::line(path, line_no);
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t,
            Err(e) => {
                f(Record::new(
                    location,
                    Err(RowErrorKind::InvalidJson(format!("not UTF-8: {e}"))),
                ))?;
                continue;
            }
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let value = serde_json::from_str::<Value>(text)
            .map_err(|e| RowErrorKind::InvalidJson(json_error_message(&e)));
        f(Record::new(location, value))?;
    }
}

/// serde_json's message without its "at line 1 column N" suffix, with the column kept.
fn json_error_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => format!("{} (column {})", &msg[..i], e.column()),
        None => msg,
    }
}

fn read_json_array<E: From<DataError>>(
    path: &Path,
    mut reader: impl BufRead,
    lines_before: u64,
    f: &mut impl FnMut(Record) -> Result<(), E>,
) -> Result<(), E> {
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .map_err(|e| DataError::io(path, e))?;
    let elements: Vec<&RawValue> =
        serde_json::from_str(&text).map_err(|e| DataError::InvalidFile {
            path: path.to_path_buf(),
            line: e.line() + lines_before as usize,
            message: json_error_message(&e),
        })?;
    // Each element borrows from `text`: its offset gives the line it starts on.
    let base = text.as_ptr() as usize;
    let mut line = 1 + lines_before;
    let mut scanned = 0usize;
    for raw in elements {
        let offset = raw.get().as_ptr() as usize - base;
        line += text.as_bytes()[scanned..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        scanned = offset;
        let value = serde_json::from_str::<Value>(raw.get())
            .map_err(|e| RowErrorKind::InvalidJson(e.to_string()));
        f(Record::new(Location::line(path, line), value))?;
    }
    Ok(())
}

fn read_parquet<E: From<DataError>>(
    path: &Path,
    f: &mut impl FnMut(Record) -> Result<(), E>,
) -> Result<(), E> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let parquet_err = |e: parquet::errors::ParquetError| DataError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(parquet_err)?;
    let rows = reader.get_row_iter(None).map_err(parquet_err)?;
    for (i, row) in rows.enumerate() {
        let row = row.map_err(parquet_err)?;
        f(Record::new(
            Location::row(path, i as u64 + 1),
            Ok(row.to_json_value()),
        ))?;
    }
    Ok(())
}
