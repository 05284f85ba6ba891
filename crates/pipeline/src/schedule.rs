//! Denoising schedules of the pipeline stages (flow-matching Euler, shifted sigmas).
//!
//! Stage 1 uses `linspace(1, 0.001, N)` (or the distilled indices), shifted by
//! `σ' = sσ / (1 + (s−1)σ)`; refinement keeps `[t_thresh]` plus the shifted timesteps below it;
//! video continuation may replace the tail below 500 by ten uniform steps (`enhance_hf`).
//! All arithmetic is f32, as in the reference.

/// Steps of one denoising loop: timestep fed to the DiT and the sigma pair of each step.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Timesteps on the 0..1000 scale.
    pub timesteps: Vec<f32>,
    /// Sigmas, one longer than `timesteps` (trailing 0).
    pub sigmas: Vec<f32>,
}

/// Training timesteps of the scheduler.
const NUM_TRAIN_TIMESTEPS: f32 = 1000.0;
/// `num_distill_sample_steps` of the pipeline.
const NUM_DISTILL_SAMPLE_STEPS: usize = 50;

/// `torch.linspace(start, end, steps)` in f32 (same halfway split as torch).
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

/// Unshifted sigmas of `get_timesteps_sigmas(steps, use_distill)`.
pub fn base_sigmas(steps: usize, distill: bool) -> Vec<f32> {
    if distill {
        let stride = (NUM_TRAIN_TIMESTEPS as usize / NUM_DISTILL_SAMPLE_STEPS) as f64;
        // Distilled timestep indices 20, 40, .., 1000, flipped.
        let flipped: Vec<i64> = (1..=NUM_DISTILL_SAMPLE_STEPS)
            .rev()
            .map(|i| (i as f64 * stride).round() as i64)
            .collect();
        (0..steps)
            .map(|k| {
                let idx =
                    (k as f64 * NUM_DISTILL_SAMPLE_STEPS as f64 / steps as f64).floor() as usize;
                flipped[idx.min(NUM_DISTILL_SAMPLE_STEPS - 1)] as f32 / NUM_TRAIN_TIMESTEPS
            })
            .collect()
    } else {
        linspace_f32(1.0, 0.001, steps)
    }
}

impl Schedule {
    /// The shifted schedule from unshifted sigmas.
    pub fn shifted(sigmas_in: &[f32], shift: f32) -> Self {
        let sigmas: Vec<f32> = sigmas_in
            .iter()
            .map(|&s| shift * s / (1.0 + (shift - 1.0) * s))
            .collect();
        let timesteps = sigmas.iter().map(|s| s * NUM_TRAIN_TIMESTEPS).collect();
        Self::from_parts(timesteps, sigmas)
    }

    fn from_parts(timesteps: Vec<f32>, mut sigmas: Vec<f32>) -> Self {
        sigmas.push(0.0);
        Self { timesteps, sigmas }
    }

    fn from_timesteps(timesteps: Vec<f32>) -> Self {
        let sigmas = timesteps.iter().map(|t| t / NUM_TRAIN_TIMESTEPS).collect();
        Self::from_parts(timesteps, sigmas)
    }

    /// Stage-1 schedule (`generate_i2v`): base or distilled sigmas, shifted.
    pub fn stage1(steps: usize, distill: bool, shift: f32) -> Self {
        Self::shifted(&base_sigmas(steps, distill), shift)
    }

    /// Refinement schedule: `[t_thresh·1000]` then the base timesteps below it.
    pub fn refine(steps: usize, shift: f32, t_thresh: f32) -> Self {
        let base = Self::stage1(steps, false, shift);
        let thresh = t_thresh * NUM_TRAIN_TIMESTEPS;
        let mut ts = vec![thresh];
        ts.extend(base.timesteps.iter().copied().filter(|&t| t < thresh));
        Self::from_timesteps(ts)
    }

    /// Video-continuation schedule; with `enhance_hf` the timesteps at or below 500 are
    /// replaced by ten uniform steps 500, 450, .., 50.
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
        // np.linspace(500, 0, 10, endpoint=False) in f32.
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
