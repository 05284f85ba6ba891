//! Size limits every model op plans within.

use crate::{ModelError, Result};

/// The largest element count one tensor kernel may cover: candle's CUDA kernels launch with
/// 32-bit element counts, so anything above `i32::MAX` would be silently truncated.
pub const MAX_KERNEL_ELEMS: usize = i32::MAX as usize;

/// Fails when a kernel over `n` elements would exceed [`MAX_KERNEL_ELEMS`].
pub fn check_kernel_elems(what: &str, n: usize) -> Result<()> {
    if n > MAX_KERNEL_ELEMS {
        return Err(ModelError::InvalidArgument(format!(
            "{what}: a single kernel over {n} elements exceeds the 2^31 limit of one launch"
        )));
    }
    Ok(())
}
