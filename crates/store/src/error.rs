//! Store errors.

/// Errors from the job store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite:…` nor `postgres://…`, or cannot be parsed.
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The SQLite file's parent directory could not be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A job with this id already exists.
    #[error("a job with id {0:?} already exists")]
    DuplicateId(String),
    /// No job with this id.
    #[error("no job with id {0:?}")]
    UnknownJob(String),
    /// A job submitted with values the store refuses.
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// A stored row could not be turned back into a job (bad JSON, unknown status, …).
    #[error("corrupt row for job {id:?}: {reason}")]
    Corrupt {
        /// The job id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a foreign-key violation (a row for an unknown job) to [`StoreError::UnknownJob`].
pub(crate) fn map_fk(id: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::UnknownJob(id.to_string())
        }
        _ => StoreError::Database(e),
    }
}
