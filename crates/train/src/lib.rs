//! # rewardkit-train
//!
//! Bradley-Terry training of reward models: `−logσ(r_chosen − r_rejected − margin)` (plus TRL's
//! optional reward centring), AdamW with decoupled weight decay, warmup then linear or cosine
//! decay, global-norm clipping, gradient accumulation, evaluation with the metrics of
//! `rewardkit-eval`, a JSONL metrics log, atomic checkpoints (`checkpoint-N/` with the model,
//! optimizer state and `trainer_state.json`) and exact resume.
//!
//! ```no_run
//! use rewardkit_train::{train, Run, TrainConfig};
//! # fn demo(model: &rewardkit_model::LoadedModel, pairs: &[rewardkit_data::PreferencePair]) -> Result<(), rewardkit_train::TrainError> {
//! let config = TrainConfig { batch_size: 8, learning_rate: 3e-5, ..Default::default() };
//! let run = Run { train: pairs, eval: &[], out: "out".as_ref(), resume: true, meta: serde_json::json!({}) };
//! let summary = train(model, &config, &run, |_| std::ops::ControlFlow::Continue(()))?;
//! println!("{} steps, final model in {}", summary.steps, summary.final_dir.display());
//! # Ok(()) }
//! ```

pub mod config;
pub mod loss;
pub mod optim;
pub mod trainer;

pub use config::{Schedule, TrainConfig};
pub use loss::bradley_terry;
pub use optim::{AdamW, Grads};
pub use trainer::{
    epoch_batches, latest_checkpoint, train, EvalLog, Event, Run, StepLog, TrainSummary,
    TrainerState,
};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] rewardkit_model::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid training configuration: {0}")]
    Config(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl TrainError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
