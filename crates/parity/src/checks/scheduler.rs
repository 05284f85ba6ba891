//! Checker for the `scheduler` golden.

use crate::golden::GoldenFile;

/// Checks every case of a `scheduler` golden file.
pub fn check(_golden: &GoldenFile) -> anyhow::Result<()> {
    anyhow::bail!("the scheduler checker is not written yet")
}
