//! Checker for the `dit_bsa` golden.

use crate::golden::GoldenFile;

/// Checks every case of a `dit_bsa` golden file.
pub fn check(_golden: &GoldenFile) -> anyhow::Result<()> {
    anyhow::bail!("the dit_bsa checker is not written yet")
}
