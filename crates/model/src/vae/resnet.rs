//! The residual block of the encoder, the decoder and their mid blocks.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::cache::{cached_conv, FeatCache};
use super::norm::RmsNorm;
use crate::conv3d::{CausalConv3d, Conv3dSpec};
use crate::Result;

/// Wan residual block: norm, SiLU, causal conv ×2, plus a 1×1×1 shortcut when widths differ.
#[derive(Debug, Clone)]
pub(super) struct ResBlock {
    norm1: RmsNorm,
    conv1: CausalConv3d,
    norm2: RmsNorm,
    conv2: CausalConv3d,
    shortcut: Option<CausalConv3d>,
}

impl ResBlock {
    pub(super) fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let shortcut = if in_dim != out_dim {
            Some(CausalConv3d::new(
                Conv3dSpec::cube(in_dim, out_dim, 1, 0),
                vb.pp("conv_shortcut"),
            )?)
        } else {
            None
        };
        Ok(Self {
            norm1: RmsNorm::new(in_dim, false, vb.pp("norm1"))?,
            conv1: CausalConv3d::new(Conv3dSpec::cube(in_dim, out_dim, 3, 1), vb.pp("conv1"))?,
            norm2: RmsNorm::new(out_dim, false, vb.pp("norm2"))?,
            conv2: CausalConv3d::new(Conv3dSpec::cube(out_dim, out_dim, 3, 1), vb.pp("conv2"))?,
            shortcut,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let h = match &self.shortcut {
            Some(s) => cache.conv(s, x, None)?,
            None => x.clone(),
        };
        let y = self.norm1.forward_silu(x)?;
        let y = cached_conv(&self.conv1, &y, cache)?;
        let y = self.norm2.forward_silu(&y)?;
        let y = cached_conv(&self.conv2, &y, cache)?;
        Ok((y + h)?)
    }
}
