//! LongCat-Video pipelines and the API the server calls.
//!
//! The server sees only [`api`]: a typed request, progress and frame callbacks, a
//! cancellation token, and the [`api::VideoGenerator`] trait.

pub mod api;

pub use api::*;
