//! The pipeline API: the contract of `longcat-core` (re-exported here), and the pipeline's
//! own error, which carries the model's and candle's errors and converts to and from the
//! contract's [`GenerationError`] at the [`VideoGenerator`] boundary.

pub use longcat_core::{
    Acceleration, App, AspectRatio, CancelToken, GenerationError, GenerationRequest,
    GenerationSink, GenerationSummary, ModelInfo, Progress, Resolution, RgbImage, Stage, Task,
    VideoFrame, VideoGenerator,
};

/// Errors of a generation inside the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A request value the pipeline cannot honour.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] longcat_model::ModelError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The frame consumer failed (e.g. the encoder).
    #[error("frame sink: {0}")]
    Sink(String),
    /// The engine was lost (a panic left it unusable and it could not be rebuilt).
    #[error("the model engine is unavailable: {0}")]
    Unavailable(String),
    /// Another generator's backend error, passed through.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl From<GenerationError> for PipelineError {
    fn from(e: GenerationError) -> Self {
        match e {
            GenerationError::Cancelled => Self::Cancelled,
            GenerationError::InvalidRequest(m) => Self::InvalidRequest(m),
            GenerationError::Sink(m) => Self::Sink(m),
            GenerationError::Unavailable(m) => Self::Unavailable(m),
            GenerationError::Backend(b) => Self::Backend(b),
        }
    }
}

impl From<PipelineError> for GenerationError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Cancelled => Self::Cancelled,
            PipelineError::InvalidRequest(m) => Self::InvalidRequest(m),
            PipelineError::Sink(m) => Self::Sink(m),
            PipelineError::Unavailable(m) => Self::Unavailable(m),
            PipelineError::Model(e) => Self::Backend(Box::new(e)),
            PipelineError::Candle(e) => Self::Backend(Box::new(e)),
            PipelineError::Backend(b) => Self::Backend(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_kind_and_message_across_the_boundary() {
        let model = PipelineError::Model(longcat_model::ModelError::InvalidArgument("x".into()));
        let text = model.to_string();
        let g = GenerationError::from(model);
        assert!(matches!(g, GenerationError::Backend(_)));
        assert_eq!(g.to_string(), text);
        let back = PipelineError::from(GenerationError::Sink("disk".into()));
        assert!(matches!(back, PipelineError::Sink(m) if m == "disk"));
        assert!(matches!(
            PipelineError::from(GenerationError::Cancelled),
            PipelineError::Cancelled
        ));
    }
}
