//! Checker for the `dit_i2v` golden.

use crate::golden::GoldenFile;

/// Checks every case of a `dit_i2v` golden file.
pub fn check(_golden: &GoldenFile) -> anyhow::Result<()> {
    anyhow::bail!("the dit_i2v checker is not written yet")
}
