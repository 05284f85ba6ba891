//! The single seam all DiT self-attention goes through: dense softmax attention, or block
//! sparse attention (BSA) when enabled and the latent has more than one frame.

use candle_core::Tensor;

use super::layers::attention;
use crate::bsa::BsaParams;
use crate::error::{ModelError, Result};

/// Which self-attention kernel the DiT uses.
#[derive(Debug, Clone, Default)]
pub enum SelfAttnBackend {
    /// Plain softmax attention in f32.
    #[default]
    Dense,
    /// Block sparse attention with these parameters (used only when the forward's latent
    /// has more than one frame, as in the reference).
    BlockSparse(BsaParams),
}

impl SelfAttnBackend {
    /// Attends `q` `[B, H, Sq, D]` (tokens of `grid_q` in (T, H, W) raster order) to `k`/`v`
    /// `[B, H, Sk, D]` (tokens of `grid_k`); `latent_frames` is T of the whole forward.
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        grid_q: [usize; 3],
        grid_k: [usize; 3],
        latent_frames: usize,
    ) -> Result<Tensor> {
        match self {
            SelfAttnBackend::BlockSparse(params) if latent_frames > 1 => {
                block_sparse(q, k, v, grid_q, grid_k, params)
            }
            _ => attention(q, k, v, None),
        }
    }
}

/// Block sparse attention entry point; the kernel lives in `crate::bsa` (not yet in this
/// build, so enabling BSA on a multi-frame forward reports an error instead of silently
/// falling back to dense attention).
fn block_sparse(
    _q: &Tensor,
    _k: &Tensor,
    _v: &Tensor,
    grid_q: [usize; 3],
    grid_k: [usize; 3],
    _params: &BsaParams,
) -> Result<Tensor> {
    Err(ModelError::InvalidArgument(format!(
        "block sparse attention (grid_q {grid_q:?}, grid_k {grid_k:?}) is not available in this build"
    )))
}
