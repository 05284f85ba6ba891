//! Storage errors.

/// Errors of [`crate::Storage`].
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage target string is unusable.
    #[error("invalid storage target '{target}': {reason}")]
    InvalidTarget {
        /// What was configured.
        target: String,
        /// Why it is refused.
        reason: String,
    },
    /// A key that is not a safe relative path.
    #[error("invalid file key '{key}': {reason}")]
    InvalidKey {
        /// The refused key.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// No file under this key.
    #[error("file '{0}' not found")]
    NotFound(String),
    /// The requested byte range lies outside the file.
    #[error("range {start}..{end} is not satisfiable for a file of {size} bytes")]
    InvalidRange {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The file's size.
        size: u64,
    },
    /// Reading the local source file failed.
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The object store failed.
    #[error("object store: {0}")]
    Backend(object_store::Error),
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => StorageError::NotFound(path),
            other => StorageError::Backend(other),
        }
    }
}
