//! The LongCat job runner: workers claim queued jobs from the job store, fetch the image,
//! run the generator on their own OS thread, stream frames into the encoder, upload the
//! video, complete the job with the endpoint output, and send the fal webhook.
//!
//! See `docs/worker.md` for the job lifecycle, webhook signatures and storage settings.

mod config;
pub mod metrics;
#[allow(dead_code)]
mod model_thread;
pub mod progress;
pub mod webhook;

pub use config::{WorkerConfig, PRIVATE_RANGES};
