//! Reading records (JSON objects) from JSONL, gzip-compressed JSONL, JSON arrays and Parquet,
//! each with the location it came from. Format is recognised from the content (gzip and Parquet
//! magic bytes, `[` for a JSON array), not only from the file name.
//!
//! Blank lines in JSONL are not records and are skipped. A UTF-8 byte-order mark at the start
//! is skipped. Records are parsed strictly ([`crate::json`]): a key given twice is an error.

use std::fs::File;
use std::io::{BufRead, Cursor, Read, Seek};
use std::path::Path;

use rewardkit_io::{open_input, InputReader, IoError, STDIN};

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{DataError, RowError, RowErrorKind};
use crate::json::{describe_error, parse_value};
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

const PARQUET_MAGIC: &[u8; 4] = b"PAR1";
const BOM: &[u8; 3] = b"\xef\xbb\xbf";

/// A stream with the bytes peeked at its start put back in front.
type Peeked = std::io::Chain<Cursor<Vec<u8>>, InputReader>;

/// Calls `f` on every record of `path` (`-` is standard input), in file order. Stops at the
/// first error `f` returns. The input is opened once and read as a stream (pipes and
/// `/dev/stdin` work); gzip is recognised by its magic bytes, a UTF-8 byte-order mark is
/// skipped. File-level problems (unreadable file, broken gzip, a JSON array that does not
/// parse) are returned as `DataError`; a malformed record is passed to `f` as
/// `Record { object: Err(..) }`.
pub fn for_each_record<E: From<DataError>>(
    path: &Path,
    mut f: impl FnMut(Record) -> Result<(), E>,
) -> Result<FileKind, E> {
    let mut input = open_input(path).map_err(DataError::from)?;
    let mut head = Vec::with_capacity(4);
    (&mut input)
        .take(4)
        .read_to_end(&mut head)
        .map_err(|e| read_error(path, e, 0))?;
    if head == PARQUET_MAGIC {
        read_parquet(path, Cursor::new(head).chain(input), &mut f)?;
        return Ok(FileKind::Parquet);
    }
    if head.starts_with(BOM) {
        head.drain(..BOM.len());
    }
    let mut reader: Peeked = Cursor::new(head).chain(input);
    // Peek at the first non-whitespace byte: `[` means one JSON array, anything else JSONL.
    // Whole buffers of leading whitespace are consumed; the lines they held are counted.
    let mut lines_before = 0u64;
    let first = loop {
        let buf = reader
            .fill_buf()
            .map_err(|e| read_error(path, e, lines_before))?;
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

/// An error while reading the stream: from the OS (exit 1), or from decompression of damaged
/// or truncated data (bad input, naming the last line read).
fn read_error(path: &Path, e: std::io::Error, lines_read: u64) -> DataError {
    use std::io::ErrorKind;
    let from_data = e.raw_os_error().is_none()
        && matches!(
            e.kind(),
            ErrorKind::InvalidData | ErrorKind::InvalidInput | ErrorKind::UnexpectedEof
        );
    if from_data {
        DataError::Corrupt {
            path: path.to_path_buf(),
            lines_read,
            message: e.to_string(),
        }
    } else {
        DataError::Io(IoError::new(path, e))
    }
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
            .map_err(|e| read_error(path, e, line_no))?;
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
        let value = parse_value(text).map_err(RowErrorKind::InvalidJson);
        f(Record::new(location, value))?;
    }
}

fn read_json_array<E: From<DataError>>(
    path: &Path,
    mut reader: impl BufRead,
    lines_before: u64,
    f: &mut impl FnMut(Record) -> Result<(), E>,
) -> Result<(), E> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(path, e, lines_before))?;
    let invalid = |line: usize, message: String| DataError::InvalidFile {
        path: path.to_path_buf(),
        line: line + lines_before as usize,
        message,
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
            return Err(invalid(line, format!("not UTF-8: {}", e.utf8_error())).into());
        }
    };
    let elements: Vec<&RawValue> =
        serde_json::from_str(&text).map_err(|e| invalid(e.line(), describe_error(&text, &e)))?;
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
        let value = parse_value(raw.get()).map_err(RowErrorKind::InvalidJson);
        f(Record::new(Location::line(path, line), value))?;
    }
    Ok(())
}

/// Parquet needs to seek (its index is at the end): a regular file is reopened and read in
/// place; anything else (a pipe, standard input, gzip-compressed Parquet) is read into memory.
fn read_parquet<E: From<DataError>>(
    path: &Path,
    mut stream: Peeked,
    f: &mut impl FnMut(Record) -> Result<(), E>,
) -> Result<(), E> {
    let parquet_err = |e: parquet::errors::ParquetError| DataError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = seekable_parquet(path);
    let bytes = match file {
        Some(_) => None,
        None => {
            let mut bytes = Vec::new();
            stream
                .read_to_end(&mut bytes)
                .map_err(|e| read_error(path, e, 0))?;
            Some(bytes::Bytes::from(bytes))
        }
    };
    // The parquet crate panics on some malformed files (found by fuzzing: a dictionary page
    // missing, "Decoder for dict should have been set"): such a file is bad input, not a crash.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match (file, bytes) {
        (Some(file), _) => {
            let reader = SerializedFileReader::new(file).map_err(parquet_err)?;
            parquet_rows(path, &reader, f)
        }
        (None, Some(bytes)) => {
            let reader = SerializedFileReader::new(bytes).map_err(parquet_err)?;
            parquet_rows(path, &reader, f)
        }
        (None, None) => unreachable!("one of the two is set above"),
    }));
    outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(DataError::Parquet {
            path: path.to_path_buf(),
            message: format!("malformed file (the Parquet reader failed: {message})"),
        }
        .into())
    })
}

/// `path` opened again when it is a regular file that starts with Parquet's magic (not gzip).
fn seekable_parquet(path: &Path) -> Option<File> {
    if path.as_os_str() == STDIN {
        return None;
    }
    let mut file = File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).ok()?;
    file.rewind().ok()?;
    (&magic == PARQUET_MAGIC).then_some(file)
}

fn parquet_rows<R: parquet::file::reader::ChunkReader + 'static, E: From<DataError>>(
    path: &Path,
    reader: &SerializedFileReader<R>,
    f: &mut impl FnMut(Record) -> Result<(), E>,
) -> Result<(), E> {
    let parquet_err = |e: parquet::errors::ParquetError| DataError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
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
