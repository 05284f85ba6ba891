//! How a generation fails ([`GenerationError`]) and how a job's failure is recorded
//! ([`JobErrorKind`]).

use std::fmt;
use std::str::FromStr;

/// Errors of a generation, as a [`crate::VideoGenerator`] and a [`crate::GenerationSink`]
/// report them.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A request value the generator cannot honour.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The frame consumer failed (e.g. the encoder).
    #[error("frame sink: {0}")]
    Sink(String),
    /// The engine was lost (a panic left it unusable and it could not be rebuilt).
    #[error("the model engine is unavailable: {0}")]
    Unavailable(String),
    /// The model or a tensor operation failed (the model side's own error).
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Why a job ended without a video, as the job store records it (its wire names are the
/// `kind` column and the `kind` of stored job errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobErrorKind {
    /// Invalid input (422 with a `detail` array).
    Validation,
    /// Cancelled by the caller.
    Cancelled,
    /// Failure while processing.
    Internal,
    /// The worker vanished and the job ran out of attempts.
    Lost,
    /// Not started before the caller's `X-Fal-Request-Timeout`.
    Timeout,
    /// The safety checker flagged the input image or the output (422 with a
    /// `content_policy_violation` detail; not billed, no video stored).
    ContentPolicy,
}

impl JobErrorKind {
    /// Every kind.
    pub const ALL: [JobErrorKind; 6] = [
        Self::Validation,
        Self::Cancelled,
        Self::Internal,
        Self::Lost,
        Self::Timeout,
        Self::ContentPolicy,
    ];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "validation",
            Self::Cancelled => "cancelled",
            Self::Internal => "internal",
            Self::Lost => "lost",
            Self::Timeout => "timeout",
            Self::ContentPolicy => "content_policy",
        }
    }
}

impl fmt::Display for JobErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobErrorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown job error kind '{s}'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in JobErrorKind::ALL {
            assert_eq!(k.as_str().parse::<JobErrorKind>(), Ok(k));
        }
        assert!("boom".parse::<JobErrorKind>().is_err());
    }

    #[test]
    fn backend_errors_show_their_own_message() {
        let e = GenerationError::Backend("tensor shape mismatch".into());
        assert_eq!(e.to_string(), "tensor shape mismatch");
    }
}
