//! Errors of SFT and RL.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RlError {
    #[error(transparent)]
    Train(#[from] rewardkit_train::TrainError),
    #[error(transparent)]
    Model(#[from] rewardkit_model::ModelError),
    #[error(transparent)]
    Generate(#[from] rewardkit_model::GenerateError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Io(#[from] rewardkit_io::IoError),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The reward (or gold) function failed or returned the wrong number of scores.
    #[error("reward `{name}`: {message}")]
    Reward { name: String, message: String },
    /// A training row that cannot be used (names the row).
    #[error("row {index}: {message}")]
    Row { index: usize, message: String },
    #[error("checkpoint {}: {message}", dir.display())]
    Checkpoint { dir: PathBuf, message: String },
    /// The checkpoint belongs to another run.
    #[error("cannot resume from {}: {}", dir.display(), differences.join(", "))]
    ResumeMismatch {
        dir: PathBuf,
        differences: Vec<String>,
    },
}

impl RlError {
    /// Whether the error is the user's choice of flags against what is on disk (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            RlError::Train(e) => e.is_usage(),
            RlError::ResumeMismatch { .. } => true,
            _ => false,
        }
    }
}
