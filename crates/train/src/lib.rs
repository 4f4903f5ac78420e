//! # rewardkit-train
//!
//! Bradley-Terry training of reward models: `−logσ(r_chosen − r_rejected − margin)` (plus TRL's
//! optional reward centring), or for a soft label p (a pair's `p_chosen`; ½ for a tie, trained
//! with [`Ties::Train`]) the cross-entropy `−p·logσ(Δ) − (1 − p)·logσ(−Δ)`; AdamW with decoupled weight decay, warmup then linear or cosine
//! decay, global-norm clipping, gradient accumulation, evaluation with the metrics of
//! `rewardkit-eval`, a JSONL metrics log, atomic checkpoints (`checkpoint-N/` with the model,
//! optimizer state and `trainer_state.json`) and exact resume, refused when the checkpoint's
//! hyperparameters, data or starting model differ ([`Fingerprints`]). [`RunConfig`] is the schema
//! of a whole run (`--config` files and the `run` field of every checkpoint's `rewardkit.json`).
//! Penalties against reward hacking ([`Penalty`]: an honesty penalty on correction pairs,
//! counterfactual invariance to information-free edits, ODIN's length head) join the loss from
//! [`TrainConfig::penalties`].
//!
//! ```no_run
//! use rewardkit_train::{train, Run, Start, TrainConfig};
//! # fn demo(model: &rewardkit_model::LoadedModel, pairs: &[rewardkit_data::PreferencePair]) -> Result<(), rewardkit_train::TrainError> {
//! let config = TrainConfig { batch_size: 8, learning_rate: 3e-5, ..Default::default() };
//! // Continue the run in `out` if it has a checkpoint, else start one.
//! let run = Run { start: Start::ResumeOrFresh, ..Run::new(pairs, &[], "out".as_ref()) };
//! let summary = train(model, &config, &run, |_| std::ops::ControlFlow::Continue(()))?;
//! println!("{} steps, final model in {}", summary.steps, summary.final_dir.display());
//! # Ok(()) }
//! ```

pub mod checkpoint;
pub mod config;
pub mod fingerprint;
pub mod log;
pub mod loss;
pub mod memory;
pub mod optim;
pub mod penalty;
pub mod run_config;
pub mod trainer;
pub mod window;

pub use checkpoint::{
    checkpoint_name, json_differences, latest_checkpoint, list_checkpoints, parse_checkpoint_name,
    prepare_out, prune_checkpoints, write_run_dir, Start, TrainerState,
};
pub use config::{OptimConfig, Schedule, Ties, TrainConfig};
pub use fingerprint::Fingerprints;
pub use loss::bradley_terry;
pub use optim::{AdamW, Grads};
pub use penalty::Penalty;
pub use run_config::RunConfig;
pub use trainer::{epoch_batches, train, EvalLog, Event, Run, StepLog, TrainSummary};
pub use window::{TrainWindow, WindowStats};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] rewardkit_model::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Io(#[from] rewardkit_io::IoError),
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// A pair that cannot be encoded for the model (no tokens at all), named by its location.
    #[error("{location}: {source}")]
    Encode {
        location: rewardkit_data::Location,
        source: Box<rewardkit_model::ModelError>,
    },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The run's estimated peak memory exceeds what is available ([`memory::check_fits`]).
    #[error("not enough memory: {0}")]
    WontFit(String),
    /// A new run into a folder that holds something: the two runs would mix.
    #[error(
        "{}: the output folder is not empty ({}); pass --resume to continue the run in it, \
         --overwrite to replace it, or another --out",
        dir.display(), summarize(found)
    )]
    OutNotEmpty { dir: PathBuf, found: Vec<String> },
    /// `--overwrite` of a folder that holds more than a run: nothing is removed.
    #[error(
        "{}: --overwrite only replaces a previous run (checkpoint-N/, final/, metrics.jsonl); \
         the folder also holds {}, so nothing was removed",
        dir.display(), summarize(foreign)
    )]
    NotARunFolder { dir: PathBuf, foreign: Vec<String> },
    /// `--resume` where no complete checkpoint exists.
    #[error(
        "{}: nothing to resume (no complete checkpoint-N/ folder); pass --resume-or-start to \
         start a new run when there is none",
        dir.display()
    )]
    NothingToResume { dir: PathBuf },
    /// The checkpoint belongs to another run.
    #[error("cannot resume from {}: {}", dir.display(), differences.join(", "))]
    ResumeMismatch {
        dir: PathBuf,
        differences: Vec<String>,
    },
}

impl TrainError {
    /// Whether the error is the user's choice of flags against what is on disk, or a training
    /// configuration that cannot run (a bad command line, exit code 2), rather than a failure.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            TrainError::Config(_)
                | TrainError::OutNotEmpty { .. }
                | TrainError::NotARunFolder { .. }
                | TrainError::NothingToResume { .. }
                | TrainError::ResumeMismatch { .. }
        )
    }
}

/// The first few names of a folder listing.
fn summarize(names: &[String]) -> String {
    let mut sorted = names.to_vec();
    sorted.sort();
    let shown = sorted
        .iter()
        .take(4)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if sorted.len() > 4 {
        format!("{shown}, … {} entries in all", sorted.len())
    } else {
        shown
    }
}
