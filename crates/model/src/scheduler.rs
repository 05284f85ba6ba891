//! Flow-matching Euler scheduler, as the official pipeline drives it.
//!
//! The pipeline builds unshifted sigmas (`base_sigmas`), the scheduler shifts them with the
//! checkpoint's `shift` (`sigma' = shift*s / (1 + (shift-1)*s)`), feeds `sigma'*1000` to the
//! DiT as timesteps and steps with `x_prev = x + (sigma_next - sigma) * model_output`.
//! All arithmetic is float32 in the same order as the reference, so schedules are bit-exact.

use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Training timesteps of the flow-matching model.
pub const NUM_TRAIN_TIMESTEPS: f32 = 1000.0;
/// Steps the distilled (cfg-step LoRA) model was trained for.
pub const NUM_DISTILL_SAMPLE_STEPS: usize = 50;

/// `scheduler/scheduler_config.json` (only the fields the pipeline uses; others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// Timestep shift.
    #[serde(default = "default_shift")]
    pub shift: f32,
    /// Number of training timesteps.
    #[serde(default = "default_train_timesteps")]
    pub num_train_timesteps: u32,
    /// Resolution-dependent shifting (not used by LongCat; refused when set).
    #[serde(default)]
    pub use_dynamic_shifting: bool,
}

fn default_shift() -> f32 {
    1.0
}

fn default_train_timesteps() -> u32 {
    1000
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            shift: default_shift(),
            num_train_timesteps: default_train_timesteps(),
            use_dynamic_shifting: false,
        }
    }
}

impl SchedulerConfig {
    /// Reads and validates a `scheduler_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let cfg: Self = crate::config_file::read_json(path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses settings the LongCat pipeline never uses.
    pub fn validate(&self) -> Result<()> {
        if self.use_dynamic_shifting {
            return Err(ModelError::InvalidArgument(
                "scheduler: use_dynamic_shifting is not supported by the LongCat pipeline".into(),
            ));
        }
        if self.num_train_timesteps != 1000 {
            return Err(ModelError::InvalidArgument(format!(
                "scheduler: num_train_timesteps {} (LongCat uses 1000)",
                self.num_train_timesteps
            )));
        }
        if !(self.shift.is_finite() && self.shift > 0.0) {
            return Err(ModelError::InvalidArgument(format!(
                "scheduler: shift must be positive, got {}",
                self.shift
            )));
        }
        Ok(())
    }
}

/// `torch.linspace(start, end, steps)` for float32, bit-exact with PyTorch's CPU kernel:
/// values are computed from both ends (`start + step*i` for the first half,
/// `end - step*(steps-1-i)` for the second), each with one fused multiply-add as the compiled
/// kernel does.
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - i - 1) as f32, end)
            }
        })
        .collect()
}

/// The pipeline's unshifted sigmas (`get_timesteps_sigmas`): `linspace(1, 0.001, steps)`,
/// or for the distilled model the 50 distilled sigmas sub-sampled at
/// `floor(linspace(0, 50, steps, endpoint=False))`.
pub fn base_sigmas(steps: usize, distill: bool) -> Vec<f32> {
    if !distill {
        return linspace_f32(1.0, 0.001, steps);
    }
    let stride = (NUM_TRAIN_TIMESTEPS as usize / NUM_DISTILL_SAMPLE_STEPS) as f32;
    // Distilled indices 1..=50 times the stride, rounded, then reversed.
    let reversed: Vec<i64> = (1..=NUM_DISTILL_SAMPLE_STEPS)
        .rev()
        .map(|i| (i as f32 * stride).round() as i64)
        .collect();
    // numpy: arange(steps) * (50 / steps), floored.
    let delta = NUM_DISTILL_SAMPLE_STEPS as f64 / steps as f64;
    (0..steps)
        .map(|k| {
            let idx = (k as f64 * delta).floor() as usize;
            reversed[idx.min(NUM_DISTILL_SAMPLE_STEPS - 1)] as f32 / NUM_TRAIN_TIMESTEPS
        })
        .collect()
}

/// A denoising schedule: the timesteps fed to the DiT and the sigmas (one more, ending in 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Timesteps on the 0..1000 scale, one per step.
    pub timesteps: Vec<f32>,
    /// Sigmas, `timesteps.len() + 1` values, the last one 0.
    pub sigmas: Vec<f32>,
}

impl Schedule {
    /// `set_timesteps(sigmas=...)`: shifts the given sigmas.
    pub fn shifted(sigmas_in: &[f32], shift: f32) -> Self {
        let sigmas: Vec<f32> = sigmas_in
            .iter()
            .map(|&s| shift * s / (1.0 + (shift - 1.0) * s))
            .collect();
        let timesteps = sigmas.iter().map(|s| s * NUM_TRAIN_TIMESTEPS).collect();
        Self::from_parts(timesteps, sigmas)
    }

    /// `set_timesteps(timesteps=...)`: sigmas are `timesteps / 1000`.
    pub fn from_timesteps(timesteps: Vec<f32>) -> Self {
        let sigmas = timesteps.iter().map(|t| t / NUM_TRAIN_TIMESTEPS).collect();
        Self::from_parts(timesteps, sigmas)
    }

    fn from_parts(timesteps: Vec<f32>, mut sigmas: Vec<f32>) -> Self {
        sigmas.push(0.0);
        Self { timesteps, sigmas }
    }

    /// Stage-1 schedule (base or distilled) with the checkpoint's shift.
    pub fn stage1(steps: usize, distill: bool, shift: f32) -> Self {
        Self::shifted(&base_sigmas(steps, distill), shift)
    }

    /// Refinement schedule: `t_thresh*1000`, then the base schedule's timesteps below it.
    pub fn refine(steps: usize, shift: f32, t_thresh: f32) -> Self {
        let base = Self::stage1(steps, false, shift);
        let thresh = t_thresh * NUM_TRAIN_TIMESTEPS;
        let mut ts = vec![thresh];
        ts.extend(base.timesteps.iter().copied().filter(|&t| t < thresh));
        Self::from_timesteps(ts)
    }

    /// Video-continuation schedule: the stage-1 schedule, or with `enhance_hf` its steps above
    /// 500 followed by ten uniform steps 500, 450, ..., 50 (the official long-video demo).
    pub fn continuation(steps: usize, distill: bool, shift: f32, enhance_hf: bool) -> Self {
        let base = Self::stage1(steps, distill, shift);
        if !enhance_hf {
            return base;
        }
        let start = 500f32;
        let mut ts: Vec<f32> = base
            .timesteps
            .iter()
            .copied()
            .filter(|&t| t > start)
            .collect();
        ts.extend((0..10).map(|i| (start as f64 - 50.0 * i as f64) as f32));
        Self::from_timesteps(ts)
    }

    /// Number of denoising steps.
    pub fn len(&self) -> usize {
        self.timesteps.len()
    }

    /// Whether there is no step.
    pub fn is_empty(&self) -> bool {
        self.timesteps.is_empty()
    }

    /// Index of the step whose timestep equals `timestep` (as the scheduler looks it up).
    pub fn index_of(&self, timestep: f32) -> Option<usize> {
        self.timesteps.iter().position(|&t| t == timestep)
    }

    /// One Euler step at `index`: `sample + (sigma_next - sigma) * model_output`.
    pub fn step(&self, index: usize, sample: &Tensor, model_output: &Tensor) -> Result<Tensor> {
        let (sigma, sigma_next) = match (self.sigmas.get(index), self.sigmas.get(index + 1)) {
            (Some(&s), Some(&n)) => (s, n),
            _ => {
                return Err(ModelError::InvalidArgument(format!(
                    "scheduler step {index} out of range for {} steps",
                    self.len()
                )))
            }
        };
        euler_step(sample, model_output, sigma, sigma_next)
    }

    /// Image-to-video step: frames `[..num_cond]` (dim 2 of `[B,C,T,H,W]`) stay untouched,
    /// the rest are stepped with the matching frames of `model_output`.
    pub fn step_i2v(
        &self,
        index: usize,
        latents: &Tensor,
        model_output: &Tensor,
        num_cond: usize,
    ) -> Result<Tensor> {
        let t = latents.dim(2)?;
        if num_cond >= t {
            return Ok(latents.clone());
        }
        let cond = latents.narrow(2, 0, num_cond)?;
        let noisy = latents.narrow(2, num_cond, t - num_cond)?;
        let out = model_output.narrow(2, num_cond, t - num_cond)?;
        let stepped = self.step(index, &noisy, &out)?;
        Ok(Tensor::cat(&[&cond, &stepped], 2)?)
    }
}

/// `x + (sigma_next - sigma) * v` with the reference's precision: the sample is float32,
/// `dt * v` is a tensor product in `v`'s dtype (so for bf16 `dt` and the product are rounded
/// to bf16, as torch does on GPU and CPU), the sum is float32 and the result is cast back to
/// `v`'s dtype. For float32 inputs this is plain float32 arithmetic.
pub fn euler_step(
    sample: &Tensor,
    model_output: &Tensor,
    sigma: f32,
    sigma_next: f32,
) -> Result<Tensor> {
    use candle_core::DType;
    let dtype = model_output.dtype();
    let dt = Tensor::new(&[sigma_next - sigma], model_output.device())?
        .to_dtype(dtype)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?[0];
    let sample = sample.to_dtype(DType::F32)?;
    let delta = model_output
        .to_dtype(DType::F32)?
        .affine(f64::from(dt), 0.0)?
        .to_dtype(dtype)?
        .to_dtype(DType::F32)?;
    Ok((sample + delta)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_schedule_starts_at_one_and_ends_near_zero() {
        let s = base_sigmas(50, false);
        assert_eq!(s[0], 1.0);
        assert_eq!(s[49], 0.001);
        assert!(s.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn distilled_schedule_subsamples_distilled_sigmas() {
        let s = base_sigmas(16, true);
        assert_eq!(s[0], 1.0);
        assert_eq!(s.len(), 16);
        // floor(k * 50/16) for k = 1 is 3: the 4th distilled sigma, 0.94.
        assert_eq!(s[1], 0.94);
    }

    #[test]
    fn refine_schedule_starts_at_threshold() {
        let s = Schedule::refine(50, 12.0, 0.5);
        assert_eq!(s.timesteps[0], 500.0);
        assert!(s.timesteps[1..].iter().all(|&t| t < 500.0));
        assert_eq!(s.sigmas.len(), s.timesteps.len() + 1);
        assert_eq!(*s.sigmas.last().unwrap(), 0.0);
    }

    #[test]
    fn bf16_step_rounds_dt_and_product_like_torch() {
        use candle_core::{DType, Device};
        let dev = Device::Cpu;
        let (sigma, next) = (0.9796168f32, 0.9706271f32);
        let dt_bf16 = half::bf16::from_f32(next - sigma).to_f32();
        let m = [1.37f32, -2.5, 0.031];
        let x = [0.5f32, 1.0, -0.25];
        let mt = Tensor::new(&m, &dev)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let xt = Tensor::new(&x, &dev).unwrap();
        let out = euler_step(&xt, &mt, sigma, next).unwrap();
        assert_eq!(out.dtype(), DType::BF16);
        let got = out.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap();
        for i in 0..3 {
            let mb = half::bf16::from_f32(m[i]).to_f32();
            let prod = half::bf16::from_f32(mb * dt_bf16).to_f32();
            let want = half::bf16::from_f32(x[i] + prod).to_f32();
            assert_eq!(got[i], want, "element {i}");
        }
        // float32 stays plain float32 arithmetic.
        let m32 = Tensor::new(&m, &dev).unwrap();
        let out32 = euler_step(&xt, &m32, sigma, next)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for i in 0..3 {
            assert_eq!(out32[i], x[i] + (next - sigma) * m[i]);
        }
    }

    #[test]
    fn config_refuses_dynamic_shifting() {
        let cfg = SchedulerConfig {
            use_dynamic_shifting: true,
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
    }

    // Checks against the numbers quoted in the model spec (shift 12).
    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-4 * y.abs().max(1.0))
    }

    /// Values quoted in the model spec (shift 12).
    #[test]
    fn refine_schedules_from_spec() {
        let s = Schedule::refine(50, 12.0, 0.5);
        assert!(
            close(&s.timesteps, &[500.0, 443.02, 343.47, 207.77, 11.87]) || {
                s.timesteps.len() == 5 && (s.timesteps[4] - 11.869).abs() < 0.01
            }
        );
        assert_eq!(Schedule::refine(12, 12.0, 0.5).len(), 2);
        assert_eq!(Schedule::refine(40, 12.0, 0.5).len(), 4);
        assert_eq!(s.sigmas.len(), 6);
        assert_eq!(*s.sigmas.last().unwrap(), 0.0);
    }

    #[test]
    fn stage1_three_steps_matches_golden_meta() {
        let s = Schedule::stage1(3, false, 12.0);
        assert!(close(&s.timesteps, &[1000.0, 923.2189, 11.869436]));
        let d = Schedule::stage1(3, true, 12.0);
        assert!(close(&d.timesteps, &[1000.0, 962.26416, 860.7595]));
    }

    #[test]
    fn enhance_hf_tail() {
        let s = Schedule::continuation(50, false, 12.0, true);
        assert!(s.timesteps.iter().rev().take(10).all(|t| *t <= 500.0));
        assert_eq!(*s.timesteps.last().unwrap(), 50.0);
    }
}
