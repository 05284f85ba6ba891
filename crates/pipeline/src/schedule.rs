//! Denoising schedules of the pipeline stages: the model crate's flow-matching scheduler.

pub use longcat_model::scheduler::{base_sigmas, euler_step, Schedule};
