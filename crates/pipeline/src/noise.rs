//! Random draws of a generation: seeded (bitwise reproducible on CPU) or injected (tests).
//!
//! Every draw names its purpose (`init_noise`, `posterior_noise`, `posterior_noise_video_up`,
//! `randn_like_mix`, `posterior_noise_image`), the names the goldens use for the saved draws.

use std::collections::VecDeque;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::api::PipelineError;

/// A source of standard-normal tensors.
pub trait NoiseSource {
    /// Draws a standard-normal f32 tensor of `shape` for `purpose`.
    fn normal(
        &mut self,
        purpose: &str,
        shape: &[usize],
        device: &Device,
    ) -> Result<Tensor, PipelineError>;
}

/// Standard-normal draws from ChaCha8 seeded with the request seed; the values are computed
/// on the CPU, so the same seed gives the same bits on every machine.
pub struct SeededNoise {
    rng: ChaCha8Rng,
}

impl SeededNoise {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl NoiseSource for SeededNoise {
    fn normal(
        &mut self,
        _purpose: &str,
        shape: &[usize],
        device: &Device,
    ) -> Result<Tensor, PipelineError> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| StandardNormal.sample(&mut self.rng))
            .collect();
        Ok(Tensor::from_vec(v, shape, device)?)
    }
}

/// Replays saved draws in order; each must have the requested purpose and shape.
#[derive(Default)]
pub struct InjectedNoise {
    queue: VecDeque<(String, Tensor)>,
}

impl InjectedNoise {
    /// Draws to replay, in the order the pipeline will ask for them.
    pub fn new(draws: Vec<(String, Tensor)>) -> Self {
        Self {
            queue: draws.into(),
        }
    }

    /// Draws not consumed yet.
    pub fn remaining(&self) -> usize {
        self.queue.len()
    }
}

impl NoiseSource for InjectedNoise {
    fn normal(
        &mut self,
        purpose: &str,
        shape: &[usize],
        device: &Device,
    ) -> Result<Tensor, PipelineError> {
        let (name, t) = self.queue.pop_front().ok_or_else(|| {
            PipelineError::InvalidRequest(format!("no injected noise left for `{purpose}`"))
        })?;
        if name != purpose || t.dims() != shape {
            return Err(PipelineError::InvalidRequest(format!(
                "injected noise `{name}` {:?} does not match draw `{purpose}` {shape:?}",
                t.dims()
            )));
        }
        Ok(t.to_device(device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bits() {
        let a = SeededNoise::new(7)
            .normal("x", &[2, 3], &Device::Cpu)
            .unwrap();
        let b = SeededNoise::new(7)
            .normal("x", &[2, 3], &Device::Cpu)
            .unwrap();
        let c = SeededNoise::new(8)
            .normal("x", &[2, 3], &Device::Cpu)
            .unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&a), v(&b));
        assert_ne!(v(&a), v(&c));
    }

    #[test]
    fn injected_checks_purpose() {
        let t = Tensor::zeros((1, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut n = InjectedNoise::new(vec![("a".into(), t)]);
        assert!(n.normal("b", &[1, 2], &Device::Cpu).is_err());
    }
}
