//! The run folder of an SFT or RL run, in the trainer's layout (`rewardkit_train::checkpoint`):
//! `checkpoint-N/` (the policy as an HF causal-LM folder, `optimizer.safetensors` and
//! `trainer_state.json` holding a [`RunState`], written last), `final/` and `metrics.jsonl`;
//! the same [`Start`] policy for what the folder already holds, and resume refused when the
//! checkpoint's settings or fingerprints differ. A run without a folder (the library's
//! in-memory use) writes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use rewardkit_io::IoError;
use rewardkit_model::Policy;
use rewardkit_train::checkpoint::{FINAL_DIR, LOG_FILE, STATE_FILE};
use rewardkit_train::log::MetricsLog;
use rewardkit_train::{
    checkpoint_name, json_differences, prepare_out, prune_checkpoints, write_run_dir, AdamW, Start,
};

use crate::RlError;

/// `trainer_state.json` of an SFT or RL checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// `sft` or `rl`.
    pub kind: String,
    pub step: usize,
    pub total_steps: usize,
    /// The settings that must match to resume.
    pub config: serde_json::Value,
    /// What the run started from and trains on (policy weights, reference, data), hashed.
    pub fingerprints: BTreeMap<String, String>,
}

/// An open run folder (or none).
pub(crate) struct RunFolder {
    out: Option<PathBuf>,
    state: RunState,
    save_total_limit: usize,
    log: Option<MetricsLog>,
}

impl RunFolder {
    /// Prepares `out` as `start` says; when resuming, checks the checkpoint against `state`
    /// and loads its weights into `policy` and its moments into `optimizer`. Returns the folder
    /// and the step to continue after (0 for a new run).
    pub fn open(
        out: Option<&Path>,
        start: Start,
        state: RunState,
        save_total_limit: usize,
        policy: &Policy,
        optimizer: &mut AdamW,
    ) -> Result<(Self, usize), RlError> {
        let Some(out) = out else {
            let folder = RunFolder {
                out: None,
                state,
                save_total_limit,
                log: None,
            };
            return Ok((folder, 0));
        };
        let resume = prepare_out(out, start)?;
        let step = match resume {
            Some((_, dir)) => resume_from(&dir, &state, policy, optimizer)?,
            None => 0,
        };
        let log = MetricsLog::open(&out.join(LOG_FILE), step)?;
        let folder = RunFolder {
            out: Some(out.to_path_buf()),
            state,
            save_total_limit,
            log: Some(log),
        };
        Ok((folder, step))
    }

    /// Appends a line to `metrics.jsonl`.
    pub fn log<T: Serialize>(&mut self, kind: &str, entry: &T) -> Result<(), RlError> {
        if let Some(log) = &mut self.log {
            log.write(kind, entry)?;
        }
        Ok(())
    }

    /// Writes `checkpoint-{step}/` and prunes old ones; its path (none without a folder).
    pub fn save_checkpoint(
        &self,
        step: usize,
        policy: &Policy,
        optimizer: &AdamW,
    ) -> Result<Option<PathBuf>, RlError> {
        let Some(out) = &self.out else {
            return Ok(None);
        };
        let state = RunState {
            step,
            ..self.state.clone()
        };
        let text = serde_json::to_vec_pretty(&state)
            .map_err(|e| RlError::Config(format!("trainer state: {e}")))?;
        let dir = out.join(checkpoint_name(step));
        write_run_dir(&dir, Some(optimizer), Some(&text), |tmp| {
            policy
                .save(tmp)
                .map_err(|e| rewardkit_train::TrainError::Checkpoint(e.to_string()))
        })?;
        prune_checkpoints(out, self.save_total_limit)?;
        Ok(Some(dir))
    }

    /// Writes `final/` (the policy alone); its path (none without a folder).
    pub fn save_final(&self, policy: &Policy) -> Result<Option<PathBuf>, RlError> {
        let Some(out) = &self.out else {
            return Ok(None);
        };
        let dir = out.join(FINAL_DIR);
        write_run_dir(&dir, None, None, |tmp| {
            policy
                .save(tmp)
                .map_err(|e| rewardkit_train::TrainError::Checkpoint(e.to_string()))
        })?;
        Ok(Some(dir))
    }
}

/// Checks that the checkpoint in `dir` belongs to the run `now` describes, then loads it.
fn resume_from(
    dir: &Path,
    now: &RunState,
    policy: &Policy,
    optimizer: &mut AdamW,
) -> Result<usize, RlError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(IoError::at(&path))?;
    let then: RunState = serde_json::from_str(&text).map_err(|e| RlError::Checkpoint {
        dir: dir.to_path_buf(),
        message: format!("{STATE_FILE}: {e} (not an SFT or RL checkpoint?)"),
    })?;
    let mut differences = Vec::new();
    if then.kind != now.kind {
        differences.push(format!("kind (checkpoint {}, now {})", then.kind, now.kind));
    }
    differences.extend(json_differences(&then.config, &now.config));
    for (name, value) in &then.fingerprints {
        let current = now.fingerprints.get(name).cloned().unwrap_or_default();
        if &current != value {
            differences.push(format!(
                "{name} fingerprint (checkpoint {value}, now {current})"
            ));
        }
    }
    if !differences.is_empty() {
        return Err(RlError::ResumeMismatch {
            dir: dir.to_path_buf(),
            differences,
        });
    }
    policy.params().load_dir(dir)?;
    optimizer.load(&dir.join("optimizer.safetensors"))?;
    Ok(then.step)
}
