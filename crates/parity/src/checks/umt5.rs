//! Checker for the `umt5` golden.

use crate::golden::GoldenFile;

/// Checks every case of a `umt5` golden file.
pub fn check(_golden: &GoldenFile) -> anyhow::Result<()> {
    anyhow::bail!("the umt5 checker is not written yet")
}
