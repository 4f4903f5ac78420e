//! The layout of a run folder, in one place:
//!
//! ```text
//! OUT/
//!   checkpoint-N/     model.safetensors, config.json, tokenizer, rewardkit.json,
//!                     optimizer.safetensors, trainer_state.json (written last: marks it complete)
//!   final/            the same without the optimizer and trainer state
//!   metrics.jsonl     one JSON line per log step and per evaluation
//! ```
//!
//! Every folder is written under a temporary name and renamed ([`rewardkit_io::write_dir`]), so
//! a crash never leaves half a checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use serde::{Deserialize, Serialize};

use rewardkit_eval::PairReport;
use rewardkit_io::IoError;
use rewardkit_model::LoadedModel;

use crate::config::TrainConfig;
use crate::fingerprint::Fingerprints;
use crate::optim::AdamW;
use crate::TrainError;

/// The file of a checkpoint whose presence marks it complete.
pub const STATE_FILE: &str = "trainer_state.json";
/// The training log of a run folder.
pub const LOG_FILE: &str = "metrics.jsonl";
/// The folder of the finished model.
pub const FINAL_DIR: &str = "final";
const PREFIX: &str = "checkpoint-";

/// `trainer_state.json` of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub step: usize,
    pub total_steps: usize,
    pub config: TrainConfig,
    /// What the run trains on and started from (absent in checkpoints of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<Fingerprints>,
}

/// The folder name of the checkpoint at `step`.
pub fn checkpoint_name(step: usize) -> String {
    format!("{PREFIX}{step}")
}

/// The step of a folder named `checkpoint-N`.
pub fn parse_checkpoint_name(name: &str) -> Option<usize> {
    let digits = name.strip_prefix(PREFIX)?;
    // `checkpoint-007` or `checkpoint-+7` are not ours.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The `checkpoint-N` folders in `out` (complete or not), by step.
pub fn list_checkpoints(out: &Path) -> Result<Vec<(usize, PathBuf)>, TrainError> {
    if !out.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(out).map_err(IoError::at(out))? {
        let entry = entry.map_err(IoError::at(out))?;
        if let Some(step) = parse_checkpoint_name(&entry.file_name().to_string_lossy()) {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint in `out`.
pub fn latest_checkpoint(out: &Path) -> Option<(usize, PathBuf)> {
    list_checkpoints(out)
        .ok()?
        .into_iter()
        .rev()
        .find(|(_, dir)| dir.join(STATE_FILE).exists())
}

/// Removes all but the newest `keep` checkpoints.
pub fn prune_checkpoints(out: &Path, keep: usize) -> Result<(), TrainError> {
    let found = list_checkpoints(out)?;
    let excess = found.len().saturating_sub(keep.max(1));
    for (_, dir) in found.into_iter().take(excess) {
        std::fs::remove_dir_all(&dir).map_err(IoError::at(&dir))?;
    }
    Ok(())
}

/// Reads a checkpoint's `trainer_state.json`.
pub fn read_state(dir: &Path) -> Result<TrainerState, TrainError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(IoError::at(&path))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}

/// What a saved model folder records besides the weights.
pub struct SaveMeta<'a> {
    pub state: &'a TrainerState,
    /// Merged into `rewardkit.json` (e.g. the run config).
    pub extra: &'a serde_json::Value,
    pub eval: Option<&'a PairReport>,
    /// Training state besides the model and the optimizer that a checkpoint (not `final/`)
    /// keeps for resuming: a file name and its tensors (ODIN's length head).
    pub state_tensors: Option<(&'a str, HashMap<String, Tensor>)>,
}

/// Writes `checkpoint-N/` (with the optimizer and trainer state) and returns its path.
pub fn save_checkpoint(
    model: &LoadedModel,
    optimizer: &AdamW,
    meta: &SaveMeta,
    out: &Path,
) -> Result<PathBuf, TrainError> {
    let dir = out.join(checkpoint_name(meta.state.step));
    write_model_dir(model, Some(optimizer), meta, &dir)?;
    Ok(dir)
}

/// Writes the finished model to `final/` and returns its path.
pub fn save_final(model: &LoadedModel, meta: &SaveMeta, out: &Path) -> Result<PathBuf, TrainError> {
    let dir = out.join(FINAL_DIR);
    write_model_dir(model, None, meta, &dir)?;
    Ok(dir)
}

/// Writes a model folder atomically; with an optimizer, a resumable checkpoint.
fn write_model_dir(
    model: &LoadedModel,
    optimizer: Option<&AdamW>,
    meta: &SaveMeta,
    dir: &Path,
) -> Result<(), TrainError> {
    let state = meta.state;
    let mut info = serde_json::json!({
        "train": state.config,
        "step": state.step,
        "total_steps": state.total_steps,
        "eval": meta.eval,
    });
    if let Some(f) = &state.fingerprints {
        info["fingerprints"] = serde_json::to_value(f).map_err(json_error)?;
    }
    if let (Some(o), Some(e)) = (info.as_object_mut(), meta.extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    let state_json = match optimizer {
        Some(_) => Some(serde_json::to_vec_pretty(state).map_err(json_error)?),
        None => None,
    };
    let state_tensors = meta.state_tensors.as_ref().filter(|_| optimizer.is_some());
    write_run_dir(dir, optimizer, state_json.as_deref(), |tmp| {
        rewardkit_model::save(model, tmp, info)?;
        if let Some((file, tensors)) = state_tensors {
            rewardkit_model::params::save_tensors_atomic(tensors, &tmp.join(file))?;
        }
        Ok(())
    })
}

/// Writes a run folder atomically ([`rewardkit_io::write_dir`]): the model through
/// `write_model` (into the temporary folder), then with an optimizer its state
/// (`optimizer.safetensors`) and `state` as [`STATE_FILE`], written last so that its presence
/// marks a complete checkpoint. Every trainer's checkpoints (reward models, SFT, RL) go through
/// here.
pub fn write_run_dir(
    dir: &Path,
    optimizer: Option<&AdamW>,
    state: Option<&[u8]>,
    write_model: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    rewardkit_io::write_dir(dir, |tmp| -> Result<(), TrainError> {
        write_model(tmp)?;
        if let Some(optimizer) = optimizer {
            optimizer.save(&tmp.join("optimizer.safetensors"))?;
        }
        if let Some(state) = state {
            rewardkit_io::write_file(&tmp.join(STATE_FILE), state)?;
        }
        Ok(())
    })
}

/// The fields whose values differ between two JSON objects (a checkpoint's settings and this
/// run's), as `name (checkpoint X, now Y)`.
pub fn json_differences(then: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (then, now) = (
        then.as_object().unwrap_or(&empty),
        now.as_object().unwrap_or(&empty),
    );
    then.iter()
        .filter(|(k, v)| now.get(k.as_str()) != Some(*v))
        .map(|(k, v)| {
            let current = now.get(k.as_str()).cloned().unwrap_or_default();
            format!("{k} (checkpoint {v}, now {current})")
        })
        .collect()
}

fn json_error(e: serde_json::Error) -> TrainError {
    TrainError::Checkpoint(e.to_string())
}

/// How a run treats what its output folder already holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Start {
    /// A new run: the folder must be empty or absent.
    #[default]
    Fresh,
    /// A new run replacing a previous run's files (checkpoints, `final/`, the log); a folder
    /// holding anything else is refused.
    Overwrite,
    /// Continue from the newest complete checkpoint; there must be one.
    Resume,
    /// Continue from the newest complete checkpoint if there is one, else start fresh.
    ResumeOrFresh,
}

/// Is `name` one of the things a run writes into its folder (or their temporary copies)?
fn is_run_entry(name: &str) -> bool {
    let base = name
        .strip_prefix('.')
        .and_then(|n| n.split_once(".tmp").map(|(b, _)| b))
        .unwrap_or(name);
    let base = base.strip_suffix(".old").unwrap_or(base);
    base == FINAL_DIR || base == LOG_FILE || parse_checkpoint_name(base).is_some()
}

/// Gets `out` ready for a run started as `start`: returns the checkpoint to resume from, if any.
pub fn prepare_out(out: &Path, start: Start) -> Result<Option<(usize, PathBuf)>, TrainError> {
    std::fs::create_dir_all(out).map_err(IoError::at(out))?;
    let latest = latest_checkpoint(out);
    let entries: Vec<String> = std::fs::read_dir(out)
        .map_err(IoError::at(out))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match start {
        Start::Resume | Start::ResumeOrFresh if latest.is_some() => Ok(latest),
        Start::Resume => Err(TrainError::NothingToResume {
            dir: out.to_path_buf(),
        }),
        Start::Fresh | Start::ResumeOrFresh if entries.is_empty() => Ok(None),
        Start::Fresh | Start::ResumeOrFresh => Err(TrainError::OutNotEmpty {
            dir: out.to_path_buf(),
            found: entries,
        }),
        Start::Overwrite => {
            let foreign: Vec<&String> = entries.iter().filter(|n| !is_run_entry(n)).collect();
            if !foreign.is_empty() {
                return Err(TrainError::NotARunFolder {
                    dir: out.to_path_buf(),
                    foreign: foreign.into_iter().cloned().collect(),
                });
            }
            for name in &entries {
                let path = out.join(name);
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(IoError::at(&path))?;
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_round_trip_and_reject_lookalikes() {
        assert_eq!(parse_checkpoint_name(&checkpoint_name(12)), Some(12));
        for bad in [
            "checkpoint-",
            "checkpoint-+3",
            "checkpoint-1a",
            "checkpoints-1",
            "final",
        ] {
            assert_eq!(parse_checkpoint_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_out_folder_policy() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("run");
        assert_eq!(
            prepare_out(&out, Start::Fresh).unwrap(),
            None,
            "absent is fine"
        );
        assert_eq!(
            prepare_out(&out, Start::Fresh).unwrap(),
            None,
            "empty is fine"
        );
        assert!(matches!(
            prepare_out(&out, Start::Resume),
            Err(TrainError::NothingToResume { .. })
        ));
        assert_eq!(prepare_out(&out, Start::ResumeOrFresh).unwrap(), None);
        std::fs::create_dir_all(out.join("checkpoint-4")).unwrap();
        std::fs::write(out.join("checkpoint-4").join(STATE_FILE), "{}").unwrap();
        std::fs::create_dir_all(out.join("checkpoint-9")).unwrap(); // incomplete
        std::fs::write(out.join(LOG_FILE), "").unwrap();
        match prepare_out(&out, Start::Fresh) {
            Err(TrainError::OutNotEmpty { found, .. }) => assert_eq!(found.len(), 3),
            other => panic!("{other:?}"),
        }
        let (step, _) = prepare_out(&out, Start::Resume).unwrap().unwrap();
        assert_eq!(step, 4, "the newest complete checkpoint");
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let err = prepare_out(&out, Start::Overwrite).unwrap_err().to_string();
        assert!(err.contains("notes.txt"), "{err}");
        std::fs::remove_file(out.join("notes.txt")).unwrap();
        assert_eq!(prepare_out(&out, Start::Overwrite).unwrap(), None);
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    }
}
