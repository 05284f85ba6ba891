//! The causal 3D decoder (`WanDecoder3d`).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::attention::MidBlock;
use super::cache::{cached_conv, FeatCache};
use super::config::VaeConfig;
use super::norm::RmsNorm;
use super::resample::{Resample, ResampleMode};
use super::resnet::ResBlock;
use crate::conv3d::{CausalConv3d, Conv3dSpec};
use crate::Result;

/// Residual blocks then an optional upsampler (`WanUpBlock`).
#[derive(Debug, Clone)]
struct UpBlock {
    resnets: Vec<ResBlock>,
    upsampler: Option<Resample>,
}

/// The causal 3D decoder (`WanDecoder3d`).
#[derive(Debug, Clone)]
pub(super) struct Decoder {
    conv_in: CausalConv3d,
    mid: MidBlock,
    up: Vec<UpBlock>,
    pub(super) norm_out: RmsNorm,
    conv_out: CausalConv3d,
}

impl Decoder {
    pub(super) fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.decoder_base_dim.unwrap_or(cfg.base_dim);
        let levels = cfg.dim_mult.len();
        let dims: Vec<usize> = std::iter::once(cfg.dim_mult[levels - 1])
            .chain(cfg.dim_mult.iter().rev().copied())
            .map(|m| m * dim)
            .collect();
        let temporal_up: Vec<bool> = cfg.temperal_downsample.iter().rev().copied().collect();
        let conv_in =
            CausalConv3d::new(Conv3dSpec::cube(cfg.z_dim, dims[0], 3, 1), vb.pp("conv_in"))?;
        let mid = MidBlock::new(dims[0], vb.pp("mid_block"))?;
        let mut up = Vec::with_capacity(levels);
        for i in 0..levels {
            let mut in_dim = if i > 0 { dims[i] / 2 } else { dims[i] };
            let out_dim = dims[i + 1];
            let bvb = vb.pp("up_blocks").pp(i);
            let mut resnets = Vec::with_capacity(cfg.num_res_blocks + 1);
            for j in 0..=cfg.num_res_blocks {
                resnets.push(ResBlock::new(in_dim, out_dim, bvb.pp("resnets").pp(j))?);
                in_dim = out_dim;
            }
            let upsampler = if i != levels - 1 {
                let mode = if temporal_up[i] {
                    ResampleMode::Up3d
                } else {
                    ResampleMode::Up2d
                };
                Some(Resample::new(out_dim, mode, bvb.pp("upsamplers.0"))?)
            } else {
                None
            };
            up.push(UpBlock { resnets, upsampler });
        }
        let last = dims[levels];
        Ok(Self {
            conv_in,
            mid,
            up,
            norm_out: RmsNorm::new(last, false, vb.pp("norm_out"))?,
            conv_out: CausalConv3d::new(
                Conv3dSpec::cube(last, cfg.out_channels, 3, 1),
                vb.pp("conv_out"),
            )?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let x = cached_conv(&self.conv_in, x, cache)?;
        let mut x = self.mid.forward(&x, cache)?;
        for block in &self.up {
            for r in &block.resnets {
                x = r.forward(&x, cache)?;
            }
            if let Some(u) = &block.upsampler {
                x = u.forward(&x, cache)?;
            }
        }
        let x = self.norm_out.forward_silu(&x)?;
        cached_conv(&self.conv_out, &x, cache)
    }
}
