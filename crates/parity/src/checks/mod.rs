//! One checker per kind of golden file, chosen by the sidecar's `name`.

use crate::golden::GoldenFile;

pub mod dit_bsa;
pub mod dit_i2v;
pub mod dit_t2v;
pub mod lora;
pub mod pipeline;
pub mod scheduler;
pub mod umt5;
pub mod vae;

/// A checker: reads inputs from the golden, runs our code, records comparisons.
pub type CheckFn = fn(&GoldenFile) -> anyhow::Result<()>;

/// What to do with a golden of a given kind.
pub enum Checker {
    /// Run this checker.
    Check(CheckFn),
    /// Report the file as skipped, with the reason.
    Skip(&'static str),
    /// No checker knows this kind: every tensor fails.
    Unknown,
}

/// Picks the checker for a golden kind (the sidecar's `name`).
pub fn checker_for(kind: &str) -> Checker {
    match kind {
        "umt5" => Checker::Check(umt5::check),
        "vae" => Checker::Check(vae::check),
        "dit_t2v" => Checker::Check(dit_t2v::check),
        "dit_i2v" => Checker::Check(dit_i2v::check),
        "dit_bsa" => Checker::Check(dit_bsa::check),
        "lora" => Checker::Check(lora::check),
        "scheduler" => Checker::Check(scheduler::check),
        "pipeline_i2v" | "pipeline_i2v_distill" => Checker::Check(pipeline::i2v::check),
        "pipeline_refine" => Checker::Check(pipeline::refine::check),
        _ => Checker::Unknown,
    }
}
