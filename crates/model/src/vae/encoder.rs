//! The causal 3D encoder (`WanEncoder3d`).

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

/// One encoder stage entry.
#[derive(Debug, Clone)]
enum DownLayer {
    Res(ResBlock),
    Resample(Resample),
}

/// The causal 3D encoder (`WanEncoder3d`).
#[derive(Debug, Clone)]
pub(super) struct Encoder {
    conv_in: CausalConv3d,
    down: Vec<DownLayer>,
    mid: MidBlock,
    norm_out: RmsNorm,
    conv_out: CausalConv3d,
}

impl Encoder {
    pub(super) fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.base_dim;
        let dims: Vec<usize> = std::iter::once(1)
            .chain(cfg.dim_mult.iter().copied())
            .map(|m| m * dim)
            .collect();
        let conv_in = CausalConv3d::new(
            Conv3dSpec::cube(cfg.in_channels, dims[0], 3, 1),
            vb.pp("conv_in"),
        )?;
        let levels = cfg.dim_mult.len();
        let mut down = Vec::new();
        let dvb = vb.pp("down_blocks");
        for i in 0..levels {
            let mut in_dim = dims[i];
            let out_dim = dims[i + 1];
            for _ in 0..cfg.num_res_blocks {
                let n = down.len();
                down.push(DownLayer::Res(ResBlock::new(in_dim, out_dim, dvb.pp(n))?));
                in_dim = out_dim;
            }
            if i != levels - 1 {
                let mode = if cfg.temperal_downsample[i] {
                    ResampleMode::Down3d
                } else {
                    ResampleMode::Down2d
                };
                let n = down.len();
                down.push(DownLayer::Resample(Resample::new(
                    out_dim,
                    mode,
                    dvb.pp(n),
                )?));
            }
        }
        let top = dims[levels];
        Ok(Self {
            conv_in,
            down,
            mid: MidBlock::new(top, vb.pp("mid_block"))?,
            norm_out: RmsNorm::new(top, false, vb.pp("norm_out"))?,
            conv_out: CausalConv3d::new(
                Conv3dSpec::cube(top, 2 * cfg.z_dim, 3, 1),
                vb.pp("conv_out"),
            )?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let mut x = cached_conv(&self.conv_in, x, cache)?;
        for layer in &self.down {
            x = match layer {
                DownLayer::Res(r) => r.forward(&x, cache)?,
                DownLayer::Resample(r) => r.forward(&x, cache)?,
            };
        }
        let x = self.mid.forward(&x, cache)?;
        let x = self.norm_out.forward_silu(&x)?;
        cached_conv(&self.conv_out, &x, cache)
    }
}
