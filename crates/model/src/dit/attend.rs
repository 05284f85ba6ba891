//! The single seam all DiT self-attention goes through: dense softmax attention, or block
//! sparse attention (BSA) when enabled and the latent has more than one frame.

use candle_core::Tensor;

use super::layers::attention;
use crate::bsa::{bsa_attention, BsaParams};
use crate::error::Result;

/// Which self-attention kernel the DiT uses.
#[derive(Debug, Clone, Default)]
pub enum SelfAttnBackend {
    /// Softmax attention over every key (flash-style tiles, bounded memory).
    #[default]
    Dense,
    /// Block sparse attention with these parameters (used only when the forward's latent
    /// has more than one frame, as in the reference).
    BlockSparse(BsaParams),
}

/// Output of one self-attention call.
#[derive(Debug, Clone)]
pub struct AttnOutput {
    /// `[B, H, Sq, D]`.
    pub output: Tensor,
    /// Block sparse attention only, when asked for: `[B, H, n_q_blocks, n_k_blocks]` (u8),
    /// 1 = key block used.
    pub block_mask: Option<Tensor>,
}

impl SelfAttnBackend {
    /// Attends `q` `[B, H, Sq, D]` (tokens of `grid_q` in (T, H, W) raster order) to `k`/`v`
    /// `[B, H, Sk, D]` (tokens of `grid_k`); `latent_frames` is T of the whole forward.
    /// `want_mask` asks BSA for its block mask (a trace; it costs `heads × nq × nk` bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        grid_q: [usize; 3],
        grid_k: [usize; 3],
        latent_frames: usize,
        want_mask: bool,
    ) -> Result<AttnOutput> {
        match self {
            SelfAttnBackend::BlockSparse(params) if latent_frames > 1 => {
                let out = bsa_attention(q, k, v, grid_q, grid_k, params)?;
                let block_mask = if want_mask {
                    let (b, h, _, _) = q.dims4()?;
                    let m = out.selection.mask()?;
                    let (_, nq, nk) = m.dims3()?;
                    Some(m.reshape((b, h, nq, nk))?)
                } else {
                    None
                };
                Ok(AttnOutput {
                    output: out.output,
                    block_mask,
                })
            }
            _ => Ok(AttnOutput {
                output: attention(q, k, v, None)?,
                block_mask: None,
            }),
        }
    }
}
