//! The LongCat job runner: workers claim queued jobs from the job store, fetch the image,
//! run the generator on their own OS thread, stream frames into the encoder, upload the
//! video, complete the job with the endpoint output, and send the fal webhook.
//!
//! See `docs/worker.md` for the job lifecycle, webhook signatures and storage settings.

mod config;
mod failure;
mod job;
pub mod metrics;
mod model_thread;
mod outbox;
mod pool;
pub mod progress;
pub mod prompt_expansion;
pub mod safety;
pub mod settings;
mod shared;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod webhook;

pub use config::{WorkerConfig, PRIVATE_RANGES};
pub use failure::{error_outcome, job_outcome, Failure};
pub use model_thread::EngineState;
pub use pool::{WorkerError, WorkerPool};
pub use settings::{PromptExpansionLayer, WorkerLayer, WorkerSettings};
