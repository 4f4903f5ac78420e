//! `metrics.jsonl`: one JSON object per line, each with a `kind` (`train`, `eval`) and a `step`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use rewardkit_io::IoError;

use crate::TrainError;

/// The training log of a run, opened for appending.
pub struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsLog {
    /// Opens `path`, keeping only the lines of steps up to `keep_through` (a resumed run rewrites
    /// what came after; a fresh run keeps nothing).
    pub fn open(path: &Path, keep_through: usize) -> Result<Self, TrainError> {
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(IoError::at(path))?;
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| s as usize <= keep_through)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            rewardkit_io::write_file(path, kept.as_bytes())?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(IoError::at(path))?;
        Ok(MetricsLog {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends `entry` with `"kind": kind`, flushed at once (a crash loses no written line).
    pub fn write<T: Serialize>(&mut self, kind: &str, entry: &T) -> Result<(), TrainError> {
        let mut v =
            serde_json::to_value(entry).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("kind".into(), kind.into());
        }
        writeln!(self.file, "{v}").map_err(IoError::at(&self.path))?;
        self.file.flush().map_err(IoError::at(&self.path))?;
        Ok(())
    }
}
