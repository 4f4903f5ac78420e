//! Errors of the model crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Io(#[from] rewardkit_io::IoError),
    #[error("{}: invalid config: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("{}: GGUF: {message}", path.display())]
    Gguf { path: PathBuf, message: String },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("weights: {0}")]
    Weights(String),
    /// The weights do not match the config: tensors the model needs are not in the checkpoint
    /// (`missing`, by the names the model asks for), or checkpoint tensors the model does not
    /// read (`unused`, by their names in the file; known extras such as `position_ids` or an
    /// unread pooler are not counted). Only training may initialise what is missing
    /// ([`crate::InitMissing`]).
    #[error("{}: {}", path.display(), describe_mismatch(missing, unused, *head_only))]
    WeightsMismatch {
        path: PathBuf,
        missing: Vec<String>,
        unused: Vec<String>,
        /// Only the value head is missing: a bare backbone, not yet a reward model.
        head_only: bool,
    },
    /// `REWARDKIT_SIMD` holds a value that names no kernel level.
    #[error(
        "REWARDKIT_SIMD={value:?} is not a kernel level: accepted values are avx512|avx2|base \
         (or leave it unset for the widest this CPU has)"
    )]
    Simd { value: String },
    #[error(transparent)]
    Tokenize(#[from] rewardkit_tokenize::TokenizeError),
}

/// Names at most this many tensors per list in a message (the error holds them all).
const LISTED: usize = 12;

fn list(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(LISTED)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        s.push_str(&format!(" and {} more", names.len() - LISTED));
    }
    s
}

fn describe_mismatch(missing: &[String], unused: &[String], head_only: bool) -> String {
    let mut parts = Vec::new();
    if head_only {
        parts.push(format!(
            "no value head ({}): this is a bare backbone, not a reward model; train one from it \
             with `rewardkit train --model DIR`",
            list(missing)
        ));
    } else if !missing.is_empty() {
        parts.push(format!(
            "the weights lack {} tensor{} the config needs: {}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            list(missing)
        ));
    }
    if !unused.is_empty() {
        parts.push(format!(
            "{} tensor{} in the weights that the config does not use: {}",
            unused.len(),
            if unused.len() == 1 { "" } else { "s" },
            list(unused)
        ));
    }
    if !head_only {
        parts.push("do the config and the weights belong to the same model?".into());
    }
    parts.join("; ")
}

pub type Result<T> = std::result::Result<T, ModelError>;
