//! LongCat-Video pipelines and the API the server calls.
//!
//! The server sees only [`api`]: a typed request, progress and frame callbacks, a
//! cancellation token, and the [`api::VideoGenerator`] trait. The stages are written against
//! the traits of [`components`] (prompt encoder, VAE, DiT).

pub mod api;
pub mod buckets;
pub mod components;
pub mod denoise;
pub mod engine;
pub mod generator;
pub mod hooks;
pub mod image;
pub mod models;
pub mod networks;
pub mod noise;
pub mod output;
pub mod plan;
pub mod refine;
pub mod resample;
pub mod schedule;
pub mod stage1;
pub mod stage_plan;
pub mod text_encoder;
pub mod tiny;

pub use api::*;
/// VAE spatial tiling, a generator option (see [`generator::GeneratorOptions`]).
pub use longcat_model::vae::VaeTiling;
