//! Reading the checkpoint's JSON files (configs, shard indexes), with the path in errors.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{ModelError, Result};

/// Reads and parses a JSON file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ModelError::Config {
        path: path.to_path_buf(),
        source,
    })
}
