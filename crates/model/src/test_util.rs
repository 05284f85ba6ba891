//! Helpers shared by the unit tests of this crate and, with the `test-util` feature, by the
//! tests of the crates above it.

use candle_core::{DType, Tensor};

/// `max |a - b|` over all elements, as f32 (any float dtype).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.to_dtype(DType::F32))
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("max_abs_diff: tensors of the same shape")
}
