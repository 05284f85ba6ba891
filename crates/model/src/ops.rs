//! Tensor operations shared by several networks (the DiT's linear layers and the LoRA
//! adapters).

use candle_core::Tensor;

use crate::error::Result;

/// `x W^T` over the last dim of `x` (any leading dims).
pub fn matmul_last(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let in_dim = dims.last().copied().unwrap_or(0);
    let rows = x.elem_count() / in_dim.max(1);
    let x2 = x.contiguous()?.reshape((rows, in_dim))?;
    let y = x2.matmul(&w.t()?)?;
    let mut out_dims = dims;
    if let Some(last) = out_dims.last_mut() {
        *last = w.dims()[0];
    }
    Ok(y.reshape(out_dims)?)
}
