//! Errors of the model crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid config: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("{}: GGUF: {message}", path.display())]
    Gguf { path: PathBuf, message: String },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("weights: {0}")]
    Weights(String),
    #[error(transparent)]
    Tokenize(#[from] rewardkit_tokenize::TokenizeError),
}

pub type Result<T> = std::result::Result<T, ModelError>;
