//! Errors of the model crate.

use std::path::PathBuf;

/// Result alias for model code.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Everything that can go wrong loading or running the networks.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A JSON config could not be parsed.
    #[error("invalid config {path}: {source}")]
    Config {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A required tensor is missing from a checkpoint.
    #[error("tensor `{tensor}` is missing from {file}")]
    MissingTensor { tensor: String, file: String },
    /// A tensor has the wrong shape.
    #[error("tensor `{tensor}` in {file} has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        tensor: String,
        file: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    /// A weights file holds tensors the network it was built into never asked for (a
    /// different model variant, or a renamed layer).
    #[error("{file} holds tensors the network never used: {tensors:?}")]
    UnusedTensors { file: String, tensors: Vec<String> },
    /// A directory is not a LongCat-Video checkpoint.
    #[error("{path} is not a LongCat-Video checkpoint: {reason}")]
    NotACheckpoint { path: PathBuf, reason: String },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An argument is out of the supported range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
