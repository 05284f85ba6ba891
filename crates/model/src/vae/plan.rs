//! The shape-only plan of a VAE pass: every convolution call and large kernel, from the
//! config and sizes alone.

use super::attention::attn_rows;
use super::cache::CACHE_T;
use super::config::VaeConfig;
use super::resample::{resample_spec, time_conv_spec, ResampleMode};
use super::tiling::VaeTiling;
use crate::conv3d::{Conv3dSpec, ConvKernelPlan};
use crate::{ModelError, Result};

/// Which VAE pass a [`kernel_plan`] covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaePass {
    /// `encode` of a pixel video.
    Encode,
    /// `decode` to a pixel video.
    Decode,
}

/// One large kernel of a plan that is not a convolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpKernel {
    /// What the kernel is.
    pub what: String,
    /// Its element count.
    pub elems: usize,
}

/// Every convolution call of one VAE pass, in call order, and its other large kernels,
/// computed from the config and sizes alone (nothing runs).
#[derive(Debug, Clone)]
pub struct VaePlan {
    /// The pass.
    pub pass: VaePass,
    /// Pixel frames in (encode) or out (decode).
    pub frames: usize,
    /// Pixel height.
    pub height: usize,
    /// Pixel width.
    pub width: usize,
    /// Band budget the convolutions were planned with.
    pub band_elems: usize,
    /// Spatial tiling planned (`None`: whole frames).
    pub tiling: Option<VaeTiling>,
    /// Each convolution call.
    pub convs: Vec<ConvKernelPlan>,
    /// Other large kernels (whole-video permutes and concatenations, attention blocks).
    pub ops: Vec<OpKernel>,
    /// Elements held by the causal caches between chunks (largest chunk; of one tile when
    /// tiled).
    pub cache_elems: usize,
    /// f32 elements of the blend accumulators held across tiles (0 untiled): the decoded
    /// video, or the encoder's moments.
    pub accumulator_elems: usize,
}

impl VaePlan {
    /// The largest single kernel of the pass: `(layer or op, elements)`.
    pub fn largest(&self) -> (String, usize) {
        let convs = self
            .convs
            .iter()
            .map(|c| (c.layer.clone(), c.largest_kernel_elems));
        let ops = self.ops.iter().map(|o| (o.what.clone(), o.elems));
        convs.chain(ops).max_by_key(|(_, n)| *n).unwrap_or_default()
    }

    /// For each layer (first-call order), its call with the largest kernel.
    pub fn per_layer(&self) -> Vec<ConvKernelPlan> {
        let mut out: Vec<ConvKernelPlan> = Vec::new();
        for c in &self.convs {
            match out.iter_mut().find(|o| o.layer == c.layer) {
                Some(o) if o.largest_kernel_elems < c.largest_kernel_elems => *o = c.clone(),
                Some(_) => {}
                None => out.push(c.clone()),
            }
        }
        out
    }

    /// Estimated peak elements of activations: the largest convolution working set (its
    /// input, output, one padded band, im2col and product), two more activations of that
    /// size (a residual block's input and shortcut) and the caches. Weights not included.
    pub fn peak_activation_elems(&self) -> usize {
        let conv = self
            .convs
            .iter()
            .map(|c| {
                let input: usize = c.input.iter().product();
                let output: usize = c.output.iter().product();
                let act = input.max(output);
                input + output + c.band_in_elems + c.im2col_elems + c.band_out_elems + 2 * act
            })
            .max()
            .unwrap_or(0);
        let ops = self.ops.iter().map(|o| o.elems).max().unwrap_or(0);
        conv.max(ops) + self.cache_elems
    }

    /// Estimated peak bytes of the pass with activations of `dtype_bytes` each:
    /// [`Self::peak_activation_elems`] plus the f32 blend accumulators of a tiled pass.
    pub fn peak_bytes(&self, dtype_bytes: usize) -> usize {
        self.peak_activation_elems() * dtype_bytes + self.accumulator_elems * 4
    }
}

/// Shape-only walk over the encoder and decoder, mirroring their `forward`s.
struct PlanWalk {
    batch: usize,
    band_elems: usize,
    convs: Vec<ConvKernelPlan>,
    ops: Vec<OpKernel>,
    cache: usize,
}

impl PlanWalk {
    /// One conv call on `frames` (causal padding included); returns `(T, O, H, W)` out.
    fn conv(
        &mut self,
        layer: String,
        spec: Conv3dSpec,
        frames: usize,
        h: usize,
        w: usize,
    ) -> Result<(usize, usize, usize, usize)> {
        let mut p = spec.plan(self.batch, frames, h, w, self.band_elems)?;
        p.layer = layer;
        let [_, t, o, ho, wo] = p.output;
        self.convs.push(p);
        Ok((t, o, ho, wo))
    }

    fn cached(
        &mut self,
        layer: String,
        spec: Conv3dSpec,
        t: usize,
        h: usize,
        w: usize,
    ) -> Result<(usize, usize, usize, usize)> {
        self.cache += self.batch * CACHE_T * spec.in_channels * h * w;
        self.conv(layer, spec, t + spec.causal_pad(), h, w)
    }

    fn res(&mut self, name: &str, i: usize, o: usize, t: usize, h: usize, w: usize) -> Result<()> {
        if i != o {
            let spec = Conv3dSpec::cube(i, o, 1, 0);
            self.conv(format!("{name}.conv_shortcut"), spec, t, h, w)?;
        }
        self.cached(
            format!("{name}.conv1"),
            Conv3dSpec::cube(i, o, 3, 1),
            t,
            h,
            w,
        )?;
        self.cached(
            format!("{name}.conv2"),
            Conv3dSpec::cube(o, o, 3, 1),
            t,
            h,
            w,
        )?;
        Ok(())
    }

    fn mid(&mut self, name: &str, c: usize, t: usize, h: usize, w: usize) -> Result<()> {
        self.res(&format!("{name}.resnets.0"), c, c, t, h, w)?;
        let (n, hw) = (self.batch * t, h * w);
        self.ops.push(OpKernel {
            what: format!("{name}.attentions.0 qkv"),
            elems: n * hw * 3 * c,
        });
        self.ops.push(OpKernel {
            what: format!("{name}.attentions.0 score block"),
            elems: n * attn_rows(n, hw) * hw,
        });
        self.res(&format!("{name}.resnets.1"), c, c, t, h, w)
    }

    fn encoder_chunk(
        &mut self,
        cfg: &VaeConfig,
        first: bool,
        t: usize,
        h: usize,
        w: usize,
    ) -> Result<(usize, usize, usize)> {
        let dim = cfg.base_dim;
        let dims: Vec<usize> = std::iter::once(1)
            .chain(cfg.dim_mult.iter().copied())
            .map(|m| m * dim)
            .collect();
        let spec = Conv3dSpec::cube(cfg.in_channels, dims[0], 3, 1);
        let (mut t, _, mut h, mut w) = self.cached("encoder.conv_in".into(), spec, t, h, w)?;
        let levels = cfg.dim_mult.len();
        let mut n = 0;
        for i in 0..levels {
            let mut in_dim = dims[i];
            let out_dim = dims[i + 1];
            for _ in 0..cfg.num_res_blocks {
                self.res(
                    &format!("encoder.down_blocks.{n}"),
                    in_dim,
                    out_dim,
                    t,
                    h,
                    w,
                )?;
                in_dim = out_dim;
                n += 1;
            }
            if i != levels - 1 {
                let mode = if cfg.temperal_downsample[i] {
                    ResampleMode::Down3d
                } else {
                    ResampleMode::Down2d
                };
                let name = format!("encoder.down_blocks.{n}");
                let spec = resample_spec(out_dim, mode);
                (t, _, h, w) = self.conv(format!("{name}.resample.1"), spec, t, h, w)?;
                if let Some(spec) = time_conv_spec(out_dim, mode) {
                    self.cache += self.batch * out_dim * h * w;
                    if !first {
                        (t, _, _, _) = self.conv(format!("{name}.time_conv"), spec, t + 1, h, w)?;
                    }
                }
                n += 1;
            }
        }
        let top = dims[levels];
        self.mid("encoder.mid_block", top, t, h, w)?;
        let spec = Conv3dSpec::cube(top, 2 * cfg.z_dim, 3, 1);
        self.cached("encoder.conv_out".into(), spec, t, h, w)?;
        Ok((t, h, w))
    }

    fn decoder_chunk(
        &mut self,
        cfg: &VaeConfig,
        first: bool,
        h: usize,
        w: usize,
    ) -> Result<(usize, usize, usize)> {
        let dim = cfg.decoder_base_dim.unwrap_or(cfg.base_dim);
        let levels = cfg.dim_mult.len();
        let dims: Vec<usize> = std::iter::once(cfg.dim_mult[levels - 1])
            .chain(cfg.dim_mult.iter().rev().copied())
            .map(|m| m * dim)
            .collect();
        let temporal_up: Vec<bool> = cfg.temperal_downsample.iter().rev().copied().collect();
        let spec = Conv3dSpec::cube(cfg.z_dim, dims[0], 3, 1);
        let (mut t, _, mut h, mut w) = self.cached("decoder.conv_in".into(), spec, 1, h, w)?;
        self.mid("decoder.mid_block", dims[0], t, h, w)?;
        for i in 0..levels {
            let mut in_dim = if i > 0 { dims[i] / 2 } else { dims[i] };
            let out_dim = dims[i + 1];
            for j in 0..=cfg.num_res_blocks {
                let name = format!("decoder.up_blocks.{i}.resnets.{j}");
                self.res(&name, in_dim, out_dim, t, h, w)?;
                in_dim = out_dim;
            }
            if i != levels - 1 {
                let mode = if temporal_up[i] {
                    ResampleMode::Up3d
                } else {
                    ResampleMode::Up2d
                };
                let name = format!("decoder.up_blocks.{i}.upsamplers.0");
                if let Some(spec) = time_conv_spec(out_dim, mode) {
                    self.cache += self.batch * CACHE_T * out_dim * h * w;
                    if !first {
                        let frames = t + spec.causal_pad();
                        self.conv(format!("{name}.time_conv"), spec, frames, h, w)?;
                        t *= 2;
                    }
                }
                let spec = resample_spec(out_dim, mode);
                (t, _, h, w) = self.conv(format!("{name}.resample.1"), spec, t, 2 * h, 2 * w)?;
            }
        }
        let last = dims[levels];
        let spec = Conv3dSpec::cube(last, cfg.out_channels, 3, 1);
        let (t, _, h, w) = self.cached("decoder.conv_out".into(), spec, t, h, w)?;
        Ok((t, h, w))
    }
}

/// Plans every convolution of one VAE pass over a `batch × frames × height × width` pixel
/// video with band budget `band_elems`, from the config alone (nothing is allocated or
/// run). Encode reads `1 + 4⌊(F−1)/4⌋` frames; decode plans `⌈(F−1)/4⌉ + 1` latent frames.
pub fn kernel_plan(
    cfg: &VaeConfig,
    pass: VaePass,
    batch: usize,
    frames: usize,
    height: usize,
    width: usize,
    band_elems: usize,
) -> Result<VaePlan> {
    kernel_plan_tiled(cfg, pass, batch, frames, height, width, band_elems, None)
}

/// [`kernel_plan`] with optional spatial tiling: the calls of every tile in the order
/// [`super::WanVae`] runs them (tile by tile, rows then columns), plus the f32 blend
/// accumulators held across tiles ([`VaePlan::accumulator_elems`]).
#[allow(clippy::too_many_arguments)]
pub fn kernel_plan_tiled(
    cfg: &VaeConfig,
    pass: VaePass,
    batch: usize,
    frames: usize,
    height: usize,
    width: usize,
    band_elems: usize,
    tiling: Option<VaeTiling>,
) -> Result<VaePlan> {
    cfg.validate()?;
    let (st, ss) = (cfg.scale_temporal(), cfg.scale_spatial());
    if frames == 0 || !height.is_multiple_of(ss) || !width.is_multiple_of(ss) {
        return Err(ModelError::InvalidArgument(format!(
            "VAE plan: {frames} frames of {height}×{width} (need ≥ 1 frame, sides divisible \
             by {ss})"
        )));
    }
    let mut walk = PlanWalk {
        batch,
        band_elems: band_elems.max(1),
        convs: Vec::new(),
        ops: Vec::new(),
        cache: 0,
    };
    let (h, w) = (height / ss, width / ss);
    let tiles = match tiling {
        Some(t) => t.tiles(h, w),
        None => vec![((0, h), (0, w))],
    };
    let z2 = 2 * cfg.z_dim;
    let mut cache = 0;
    let mut accumulator = 0;
    for ((_, th), (_, tw)) in tiles {
        let (tile_h, tile_w) = (th * ss, tw * ss);
        match pass {
            VaePass::Encode => {
                let used = 1 + st * ((frames - 1) / st);
                walk.ops.push(OpKernel {
                    what: "encode input permute".into(),
                    elems: batch * cfg.in_channels * frames * tile_h * tile_w,
                });
                let (mut start, mut latents) = (0, 0);
                while start < used {
                    let len = if start == 0 { 1 } else { st.min(used - start) };
                    walk.cache = 0;
                    let (t, _, _) = walk.encoder_chunk(cfg, start == 0, len, tile_h, tile_w)?;
                    cache = cache.max(walk.cache);
                    latents += t;
                    start += len;
                }
                let spec = Conv3dSpec::cube(z2, z2, 1, 0);
                walk.conv("quant_conv".into(), spec, latents, th, tw)?;
                if tiling.is_some() {
                    accumulator = batch * latents * z2 * h * w;
                    walk.ops.push(OpKernel {
                        what: "tile blend (f32)".into(),
                        elems: 2 * accumulator,
                    });
                }
            }
            VaePass::Decode => {
                let latents = (frames - 1).div_ceil(st) + 1;
                let spec = Conv3dSpec::cube(cfg.z_dim, cfg.z_dim, 1, 0);
                walk.conv("post_quant_conv".into(), spec, latents, th, tw)?;
                let mut out_frames = 0;
                for i in 0..latents {
                    walk.cache = 0;
                    let (t, ho, wo) = walk.decoder_chunk(cfg, i == 0, th, tw)?;
                    cache = cache.max(walk.cache);
                    out_frames += t;
                    walk.ops.push(OpKernel {
                        what: "decode chunk permute".into(),
                        elems: batch * cfg.out_channels * t * ho * wo,
                    });
                    if tiling.is_some() {
                        walk.ops.push(OpKernel {
                            what: "tile blend (f32)".into(),
                            elems: 2 * batch * cfg.out_channels * t * height * width,
                        });
                    }
                }
                if tiling.is_some() {
                    accumulator = batch * cfg.out_channels * out_frames * height * width;
                }
            }
        }
    }
    walk.cache = cache;
    if pass == VaePass::Decode {
        let out_frames = 1 + st * ((frames - 1).div_ceil(st));
        walk.ops.push(OpKernel {
            what: "decode output concatenation".into(),
            elems: batch * cfg.out_channels * out_frames * height * width,
        });
    }
    Ok(VaePlan {
        pass,
        frames,
        height,
        width,
        band_elems: walk.band_elems,
        tiling,
        convs: walk.convs,
        ops: walk.ops,
        cache_elems: walk.cache,
        accumulator_elems: accumulator,
    })
}
