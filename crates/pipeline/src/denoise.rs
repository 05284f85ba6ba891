//! The flow-matching Euler denoising loop shared by every stage, with optional
//! classifier-free guidance (CFG-zero optimized scale).

use candle_core::{DType, Tensor, D};

use crate::components::{Denoiser, Result, TextConditioning};
use crate::hooks::Hooks;
use crate::schedule::Schedule;

/// How the clean condition frames enter the DiT.
pub enum Condition<'a, C> {
    /// The first `n` latent frames are clean condition frames inside the latents: they get
    /// timestep 0 and are never stepped.
    InBatch(usize),
    /// The latents hold noise frames only; the condition is a KV cache.
    Cached(&'a C),
}

/// CFG-zero: with `s = <cond, uncond> / (‖uncond‖² + 1e-8)` per batch item,
/// `uncond·s + g·(cond − uncond·s)`. `output` is the `[2B, …]` batch `[uncond, cond]`.
pub fn cfg_zero(output: &Tensor, guidance_scale: f32) -> Result<Tensor> {
    let b = output.dim(0)? / 2;
    let uncond = output.narrow(0, 0, b)?;
    let cond = output.narrow(0, b, b)?;
    let flat_u = uncond.flatten_from(1)?;
    let flat_c = cond.flatten_from(1)?;
    let dot = (&flat_c * &flat_u)?.sum_keepdim(D::Minus1)?;
    let norm = (flat_u.sqr()?.sum_keepdim(D::Minus1)? + 1e-8)?;
    let st = dot.div(&norm)?;
    let mut shape = vec![b];
    shape.extend(std::iter::repeat_n(1, output.rank() - 1));
    let st = st.reshape(shape)?;
    let scaled = uncond.broadcast_mul(&st)?;
    Ok((&scaled + ((cond - &scaled)? * guidance_scale as f64)?)?)
}

/// The `[B, T]` timestep tensor: `t` everywhere, 0 on the first `zero_frames` frames.
fn timestep_tensor(
    t: f32,
    batch: usize,
    frames: usize,
    zero_frames: usize,
    like: &Tensor,
) -> Result<Tensor> {
    let row: Vec<f32> = (0..frames)
        .map(|i| if i < zero_frames { 0.0 } else { t })
        .collect();
    let v: Vec<f32> = (0..batch).flat_map(|_| row.iter().copied()).collect();
    Ok(Tensor::from_vec(v, (batch, frames), like.device())?)
}

/// Runs `schedule` on `latents` (`[1, 16, T, h, w]`, normalized space) and returns the
/// denoised latents. `guidance` is `Some(scale)` for CFG, in which case `text` must be the
/// `[negative, positive]` batch. Traces `stepN.{sample,model_output,prev_sample,
/// dit_timestep,dit_output}` and `trace.dit_encoder_*`.
pub fn denoise<D: Denoiser>(
    dit: &D,
    latents: Tensor,
    schedule: &Schedule,
    text: &TextConditioning,
    guidance: Option<f32>,
    condition: Condition<'_, D::KvCache>,
    hooks: &mut Hooks<'_>,
) -> Result<Tensor> {
    hooks.record("trace.dit_encoder_hidden_states", &text.embeds);
    hooks.record("trace.dit_encoder_attention_mask", &text.mask);
    let mut latents = latents.to_dtype(DType::F32)?;
    let total = schedule.len() as u32;
    let n_cond = match condition {
        Condition::InBatch(n) => n,
        Condition::Cached(_) => 0,
    };
    for (i, &t) in schedule.timesteps.iter().enumerate() {
        hooks.check_cancel()?;
        let input = if guidance.is_some() {
            Tensor::cat(&[&latents, &latents], 0)?
        } else {
            latents.clone()
        };
        let (b, frames) = (input.dim(0)?, input.dim(2)?);
        let timestep = timestep_tensor(t, b, frames, n_cond, &input)?;
        let output = match condition {
            Condition::InBatch(n) => dit.forward(&input, &timestep, text, n)?,
            Condition::Cached(cache) => dit.forward_cached(&input, &timestep, text, cache)?,
        }
        .to_dtype(DType::F32)?;
        hooks.record(&format!("step{i}.dit_timestep"), &timestep);
        hooks.record(&format!("step{i}.dit_output"), &output);
        let guided = match guidance {
            Some(g) => cfg_zero(&output, g)?,
            None => output,
        };
        let model_output = guided.neg()?.narrow(2, n_cond, frames - n_cond)?;
        let sample = latents.narrow(2, n_cond, frames - n_cond)?;
        let dsigma = schedule.sigmas[i + 1] - schedule.sigmas[i];
        let prev = (&sample + (&model_output * dsigma as f64)?)?;
        hooks.record(&format!("step{i}.sample"), &sample);
        hooks.record(&format!("step{i}.model_output"), &model_output);
        hooks.record(&format!("step{i}.prev_sample"), &prev);
        latents = if n_cond > 0 {
            Tensor::cat(&[&latents.narrow(2, 0, n_cond)?, &prev], 2)?
        } else {
            prev
        };
        (hooks.on_step)(i as u32 + 1, total);
    }
    Ok(latents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cfg_zero_matches_formula() {
        // uncond = [1, 0], cond = [1, 1] → s = 1, out = u + g (c − u) = [1, g].
        let out = Tensor::new(&[[1f32, 0.0], [1.0, 1.0]], &Device::Cpu).unwrap();
        let g = cfg_zero(&out, 4.0).unwrap().to_vec2::<f32>().unwrap();
        assert!((g[0][0] - 1.0).abs() < 1e-6 && (g[0][1] - 4.0).abs() < 1e-6);
    }
}
