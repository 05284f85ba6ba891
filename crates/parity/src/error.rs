//! Errors of the parity harness.

use std::path::PathBuf;

/// What can go wrong while reading goldens.
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    /// A golden or sidecar file could not be read or parsed.
    #[error("cannot load {path}: {message}")]
    Load { path: PathBuf, message: String },
    /// A tensor the checker needs is not in the file.
    #[error("golden `{file}` has no tensor `{tensor}`")]
    MissingTensor { file: String, tensor: String },
    /// A sidecar value the checker needs is missing.
    #[error("golden `{file}` has no meta value at `{key}`")]
    MissingMeta { file: String, key: String },
    /// The directory cannot be listed.
    #[error("cannot read golden directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}
