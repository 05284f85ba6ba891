//! The Wan channel RMS norm (with the fused CPU kernel of `super::cpu`).

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::cpu;
use crate::Result;

/// Wan RMS norm over channels: `x / max(‖x‖, 1e-12) · √C · γ`.
#[derive(Debug, Clone)]
pub(super) struct RmsNorm {
    pub(super) gamma: Tensor,
    scale: f64,
}

impl RmsNorm {
    /// `images` selects the stored gamma shape (`[C,1,1]` vs `[C,1,1,1]`).
    pub(super) fn new(dim: usize, images: bool, vb: VarBuilder) -> Result<Self> {
        let gamma = if images {
            vb.get((dim, 1, 1), "gamma")?
        } else {
            vb.get((dim, 1, 1, 1), "gamma")?.reshape((dim, 1, 1))?
        };
        Ok(Self {
            gamma: gamma.detach(),
            scale: (dim as f64).sqrt(),
        })
    }

    /// Normalizes over the channel dim of `[.., C, H, W]`.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, false)
    }

    /// [`Self::forward`], then SiLU.
    pub(super) fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, true)
    }

    /// The native CPU kernel for f32 CPU tensors, tensor ops otherwise.
    pub(super) fn forward_act(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
        if cpu_f32(&self.gamma) && cpu_f32(x) {
            let gamma = self.gamma.flatten_all()?.to_vec1::<f32>()?;
            let dims = x.dims().to_vec();
            let r = dims.len();
            let (c, p) = (dims[r - 3], dims[r - 2] * dims[r - 1]);
            let n = dims[..r - 3].iter().product();
            let x = x.contiguous()?;
            let (st, l) = x.storage_and_layout();
            let data = crate::conv3d::cpu_f32(&st, l.start_offset())?;
            let y = cpu::rms_norm(data, (n, c, p), &gamma, self.scale as f32, silu);
            return Ok(Tensor::from_vec(y, dims, x.device())?);
        }
        let y = self.forward_ops(x)?;
        Ok(if silu { y.silu()? } else { y })
    }

    /// The tensor-op form (the reference, and the path of other devices and dtypes).
    pub(super) fn forward_ops(&self, x: &Tensor) -> Result<Tensor> {
        let c_dim = x.rank() - 3;
        let norm = x
            .sqr()?
            .sum_keepdim(c_dim)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        let y = x.broadcast_div(&norm)?.affine(self.scale, 0.0)?;
        Ok(y.broadcast_mul(&self.gamma)?)
    }
}
