//! Input/output layers of the DiT: patch embedding, timestep and caption embedders, final
//! layer and unpatchify.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::layers::{modulate_f32, DitLinear};
use crate::error::{ModelError, Result};

/// Conv3d patch embedding with kernel = stride = patch size, done as reshape + matmul.
#[derive(Debug, Clone)]
pub struct PatchEmbed {
    weight: Tensor,
    bias: Tensor,
    patch: [usize; 3],
}

impl PatchEmbed {
    /// Loads `x_embedder.proj.{weight,bias}`.
    pub fn load(vb: &VarBuilder, patch: [usize; 3], in_ch: usize, hidden: usize) -> Result<Self> {
        let vb = vb.pp("x_embedder.proj");
        let w = vb.get((hidden, in_ch, patch[0], patch[1], patch[2]), "weight")?;
        let weight = w.reshape((hidden, in_ch * patch[0] * patch[1] * patch[2]))?;
        let bias = vb.get(hidden, "bias")?;
        Ok(Self {
            weight,
            bias,
            patch,
        })
    }

    /// `[B, C, T, H, W]` to `[B, T*Nh*Nw, hidden]` tokens in (T, H, W) raster order.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t, h, w) = x.dims5()?;
        let [_, ph, pw] = self.patch;
        if !h.is_multiple_of(ph) || !w.is_multiple_of(pw) {
            return Err(ModelError::InvalidArgument(format!(
                "latent size {h}x{w} is not a multiple of the patch size {ph}x{pw}"
            )));
        }
        let (nh, nw) = (h / ph, w / pw);
        let x = x
            .to_dtype(self.weight.dtype())?
            .reshape(vec![b, c, t, nh, ph, nw, pw])?
            .permute(vec![0, 2, 3, 5, 1, 4, 6])?
            .contiguous()?
            .reshape((b * t * nh * nw, c * ph * pw))?;
        let y = x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?;
        Ok(y.reshape((b, t * nh * nw, self.weight.dims()[0]))?)
    }
}

/// Sinusoidal embedding `[N, dim]`: `cos` half first, then `sin`, frequencies
/// `exp(-ln(10000) * i / (dim/2))`; computed in f32.
pub fn timestep_frequencies(t: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let device = t.device();
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f32).ln() * i as f32 / half as f32).exp())
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), device)?;
    let n = t.elem_count();
    let args = t
        .to_dtype(DType::F32)?
        .reshape((n, 1))?
        .broadcast_mul(&freqs)?;
    let mut emb = Tensor::cat(&[args.cos()?, args.sin()?], 1)?;
    if dim % 2 == 1 {
        emb = Tensor::cat(&[emb, Tensor::zeros((n, 1), DType::F32, device)?], 1)?;
    }
    Ok(emb)
}

/// Timestep embedder: sinusoid then `Linear -> SiLU -> Linear`, all in f32.
#[derive(Debug, Clone)]
pub struct TimestepEmbedder {
    fc1: DitLinear,
    fc2: DitLinear,
    freq_dim: usize,
}

impl TimestepEmbedder {
    /// Loads `t_embedder.mlp.{0,2}`.
    pub fn load(vb: &VarBuilder, freq_dim: usize, dim: usize) -> Result<Self> {
        Ok(Self {
            fc1: DitLinear::load(vb, "t_embedder.mlp.0", freq_dim, dim, true)?,
            fc2: DitLinear::load(vb, "t_embedder.mlp.2", dim, dim, true)?,
            freq_dim,
        })
    }

    /// Flat timesteps `[N]` to f32 embeddings `[N, dim]`.
    pub fn forward(&self, t: &Tensor) -> Result<Tensor> {
        let f = timestep_frequencies(t, self.freq_dim)?;
        self.fc2
            .forward_f32(&candle_nn::ops::silu(&self.fc1.forward_f32(&f)?)?)
    }

    pub(crate) fn linears_mut(&mut self) -> [&mut DitLinear; 2] {
        [&mut self.fc1, &mut self.fc2]
    }
}

/// Caption projection: `Linear -> GELU(tanh) -> Linear` in the model dtype.
#[derive(Debug, Clone)]
pub struct CaptionEmbedder {
    fc1: DitLinear,
    fc2: DitLinear,
}

impl CaptionEmbedder {
    /// Loads `y_embedder.y_proj.{0,2}`.
    pub fn load(vb: &VarBuilder, in_dim: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            fc1: DitLinear::load(vb, "y_embedder.y_proj.0", in_dim, hidden, true)?,
            fc2: DitLinear::load(vb, "y_embedder.y_proj.2", hidden, hidden, true)?,
        })
    }

    /// `[..., caption_channels]` to `[..., hidden]`.
    pub fn forward(&self, y: &Tensor) -> Result<Tensor> {
        let dtype = self.fc1.weight().dtype();
        self.fc2
            .forward(&self.fc1.forward(&y.to_dtype(dtype)?)?.gelu()?)
    }

    pub(crate) fn linears_mut(&mut self) -> [&mut DitLinear; 2] {
        [&mut self.fc1, &mut self.fc2]
    }
}

/// Final layer: per-frame adaLN (shift, scale), f32 layer norm, linear; all in f32.
#[derive(Debug, Clone)]
pub struct FinalLayer {
    ada: DitLinear,
    linear: DitLinear,
}

impl FinalLayer {
    /// Loads `final_layer.{adaLN_modulation.1,linear}`.
    pub fn load(vb: &VarBuilder, hidden: usize, out: usize, tdim: usize) -> Result<Self> {
        Ok(Self {
            ada: DitLinear::load(vb, "final_layer.adaLN_modulation.1", tdim, 2 * hidden, true)?,
            linear: DitLinear::load(vb, "final_layer.linear", hidden, out, true)?,
        })
    }

    /// `x` `[B, N, C]`, `t` f32 `[B, T, Ct]`; returns f32 `[B, N, patch*out]`.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let (b, tt, _) = t.dims3()?;
        let c = x.dims()[2];
        let m = self
            .ada
            .forward_f32(&candle_nn::ops::silu(t)?)?
            .reshape((b, tt, 1, 2 * c))?;
        let shift = m.narrow(3, 0, c)?;
        let scale = m.narrow(3, c, c)?;
        let xm = modulate_f32(&x.to_dtype(DType::F32)?, &shift, &scale)?;
        self.linear.forward_f32(&xm)
    }

    pub(crate) fn linears_mut(&mut self) -> [&mut DitLinear; 2] {
        [&mut self.ada, &mut self.linear]
    }
}

/// `[B, N, (ph pw C)]` tokens back to `[B, C, T, H, W]` (temporal patch 1).
pub fn unpatchify(
    x: &Tensor,
    grid: [usize; 3],
    patch: [usize; 3],
    out_ch: usize,
) -> Result<Tensor> {
    let b = x.dims()[0];
    let [nt, nh, nw] = grid;
    let [_, ph, pw] = patch;
    Ok(x.reshape(vec![b, nt, nh, nw, ph, pw, out_ch])?
        .permute(vec![0, 6, 1, 2, 4, 3, 5])?
        .contiguous()?
        .reshape((b, out_ch, nt, nh * ph, nw * pw))?)
}
