//! # rewardkit-io
//!
//! The one home of rewardkit's file plumbing, so every crate writes and reads with the same
//! guarantees:
//!
//! - [`write_file`] / [`write_file_with`]: a file is written to a temporary name beside its
//!   destination, flushed to disk (`fsync`), then renamed over it. A reader never sees half a
//!   file, and a failed write removes its temporary file (a full disk does not stay full).
//! - [`write_dir`]: a folder is filled under a temporary name, every file in it synced, then
//!   renamed into place (replacing an older folder of that name), so a crash never leaves half a
//!   checkpoint.
//! - [`open_input`]: any readable stream, with `-` for standard input; gzip is recognised by its
//!   magic bytes, not by the name, so `/dev/stdin` and pipes work.
//! - [`IoError`]: an OS error together with the path it concerns, printed once as
//!   `PATH: message`.
//!
//! ```
//! # fn main() -> Result<(), rewardkit_io::IoError> {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("report.json");
//! rewardkit_io::write_file(&path, b"{}\n")?;
//! assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
//! rewardkit_io::write_dir(&dir.path().join("final"), |tmp| {
//!     rewardkit_io::write_file(&tmp.join("config.json"), b"{}")
//! })?;
//! assert!(dir.path().join("final/config.json").exists());
//! # Ok(()) }
//! ```

mod atomic;
mod input;

pub use atomic::{write_dir, write_file, write_file_with};
pub use input::{open_input, read_to_string, InputReader, STDIN};

use std::path::{Path, PathBuf};

/// An OS error and the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct IoError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub fn new(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IoError {
            path: path.into(),
            source,
        }
    }

    /// A closure for `map_err`: `std::fs::read(p).map_err(IoError::at(p))`.
    pub fn at(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
        move |source| IoError::new(path, source)
    }
}
