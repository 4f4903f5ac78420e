//! Errors of the data crate. A row-level problem always names its file and line.

use std::path::PathBuf;

use crate::types::Location;

/// What is wrong with one record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowErrorKind {
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("expected a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error("missing field `{0}`")]
    MissingField(String),
    #[error("missing field `{0}` (or `{1}`)")]
    MissingEither(&'static str, &'static str),
    #[error("field `{field}` should be {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: String,
    },
    #[error("field `{field}`: {message}")]
    InvalidValue { field: String, message: String },
}

/// A malformed record: `FILE:LINE: what is wrong`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct RowError {
    pub location: Location,
    pub kind: RowErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An error from the operating system (a missing file, a failed read): not the data's fault.
    #[error(transparent)]
    Io(#[from] rewardkit_io::IoError),
    /// Compressed data that does not decompress (a truncated or damaged `.gz`).
    #[error("{}: damaged or truncated compressed data after line {lines_read}: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        lines_read: u64,
        message: String,
    },
    #[error(transparent)]
    Row(#[from] RowError),
    #[error("{}:{line}: invalid JSON: {message}", path.display())]
    InvalidFile {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: cannot read Parquet: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    #[error("{}: cannot tell the data format ({reason}); pass --format trl|hh|pairwise", path.display())]
    UnknownFormat { path: PathBuf, reason: String },
    #[error("{}: no records", path.display())]
    Empty { path: PathBuf },
    #[error("{0}")]
    Config(String),
}

/// A short name for the JSON type of a value, for error messages.
pub fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
