//! Data-driven parity harness against the official LongCat-Video golden vectors.
//!
//! Every golden file in a directory is dispatched on its sidecar's `name` to a checker that
//! reads shapes, configs and cases from the file itself. Output tensors that no checker
//! looked at count as failures, so unknown cases fail loudly.

pub mod checks;
pub mod error;
pub mod golden;
pub mod runner;

pub use error::GoldenError;
pub use golden::{GoldenFile, Target, TensorResult, Tolerance};
pub use runner::{check_dir, check_dir_on, Report};
