//! Deterministic random weights: a `VarBuilder` backend that draws each tensor from a
//! seeded generator keyed by its name, so any config gets reproducible weights on any device.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

/// Seeded source of tensors: norm weights and `gamma`s near 1, biases small, matrices ~ N(0, 1/fan_in).
pub(crate) struct RandomBackend {
    pub(crate) seed: u64,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a hash of `name` (keys each tensor's draw).
pub(crate) fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `n` standard normal samples (Box-Muller) from `state`.
fn normals(state: &mut u64, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1 = ((splitmix(state) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (splitmix(state) >> 11) as f64 / (1u64 << 53) as f64;
        let r = (-2.0 * u1.ln()).sqrt();
        let a = 2.0 * std::f64::consts::PI * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    out
}

impl RandomBackend {
    /// One tensor of `shape` for `name`, deterministic in the seed and the name.
    pub(crate) fn draw(
        &self,
        shape: &Shape,
        name: &str,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let dims = shape.dims();
        let n = shape.elem_count();
        let mut state = self.seed ^ fnv1a(name);
        let z = normals(&mut state, n);
        let values: Vec<f32> =
            if (name.contains("norm") && dims.len() == 1 && name.ends_with("weight"))
                || name.ends_with("gamma")
            {
                z.iter().map(|v| 1.0 + 0.05 * v).collect()
            } else if dims.len() <= 1 {
                z.iter().map(|v| 0.02 * v).collect()
            } else {
                let fan_in: usize = dims[1..].iter().product();
                let s = 1.0 / (fan_in.max(1) as f32).sqrt();
                z.iter().map(|v| s * v).collect()
            };
        Tensor::from_vec(values, shape.clone(), dev)?.to_dtype(dtype)
    }
}

impl SimpleBackend for RandomBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.draw(&s, name, dtype, dev)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for `{name}`")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

/// Random tensors drawn by the device's own generator (`Tensor::randn` on the device), with
/// the scales of [`RandomBackend`]: full-size weights in seconds on a GPU, where the seeded
/// host draws would take many minutes. Reproducible only through the device's seed.
struct DeviceRandomBackend;

impl SimpleBackend for DeviceRandomBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let dims = s.dims();
        let z = Tensor::randn(0f32, 1.0, s.clone(), dev)?;
        let t = if (name.contains("norm") && dims.len() == 1 && name.ends_with("weight"))
            || name.ends_with("gamma")
        {
            z.affine(0.05, 1.0)?
        } else if dims.len() <= 1 {
            z.affine(0.02, 0.0)?
        } else {
            let fan_in: usize = dims[1..].iter().product();
            z.affine(1.0 / (fan_in.max(1) as f64).sqrt(), 0.0)?
        };
        t.to_dtype(dtype)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for `{name}`")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

/// A `VarBuilder` of random weights drawn on `device` by its own generator (see
/// [`DeviceRandomBackend`]): for benchmarks of full-size networks on a GPU.
pub fn device_random_var_builder(dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(DeviceRandomBackend), dtype, device.clone())
}

/// A `VarBuilder` whose every tensor is drawn deterministically from `seed` and its name.
pub fn random_var_builder(seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(RandomBackend { seed }), dtype, device.clone())
}
