//! Stage 1 at 480p/15 fps: text-to-video (`generate_t2v`), image-to-video (`generate_i2v`)
//! and video continuation (`generate_vc`, clean condition frames held in a KV cache).

use candle_core::Tensor;

use crate::components::{normalize_latents, Denoiser, LatentCodec, Result, TextConditioning};
use crate::denoise::{denoise, Condition};
use crate::hooks::Hooks;
use crate::noise::NoiseSource;
use crate::schedule::Schedule;

/// Latent channels of the DiT input.
pub const LATENT_CHANNELS: usize = 16;

/// Stage-1 sampling parameters.
#[derive(Debug, Clone)]
pub struct Stage1Args {
    /// Frames of the segment (`4k+1`).
    pub num_frames: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Distilled sigma schedule (with the cfg_step LoRA active).
    pub distill: bool,
    /// CFG scale; CFG runs when it is above 1.
    pub guidance_scale: f32,
    /// Scheduler shift (12).
    pub shift: f32,
}

/// The official frame-count rule: `4·⌊n/4⌋ + 1` (94 → 93, 96 → 97).
pub use longcat_core::limits::snap_frames;

/// Text for the DiT and the guidance scale: `[negative, positive]` with CFG.
fn guidance_text(
    positive: &TextConditioning,
    negative: Option<&TextConditioning>,
    guidance_scale: f32,
) -> Result<(TextConditioning, Option<f32>)> {
    match negative {
        Some(neg) if guidance_scale > 1.0 => Ok((
            TextConditioning::cfg_batch(neg, positive)?,
            Some(guidance_scale),
        )),
        _ => Ok((positive.clone(), None)),
    }
}

/// Encodes clean condition pixels `[1, 3, F, H, W]`, samples the posterior with a
/// `posterior_noise` draw and normalizes. Traces `cond.latent_mean`.
pub fn encode_condition<V: LatentCodec>(
    vae: &V,
    pixels: &Tensor,
    purpose: &str,
    noise: &mut dyn NoiseSource,
    hooks: &mut Hooks<'_>,
    trace_name: &str,
) -> Result<Tensor> {
    hooks.check_cancel()?;
    let posterior = vae.encode(pixels)?;
    hooks.record(trace_name, &posterior.mean);
    let eps = noise.normal(purpose, posterior.mean.dims(), posterior.mean.device())?;
    normalize_latents(vae, &posterior.sample(&eps)?)
}

/// `generate_i2v` up to the final latents (normalized space, `[1, 16, T, h, w]`).
/// `image` is the preprocessed `[1, 3, H, W]` condition in `[-1, 1]`.
#[allow(clippy::too_many_arguments)]
pub fn generate_i2v<D: Denoiser, V: LatentCodec>(
    dit: &D,
    vae: &V,
    image: &Tensor,
    positive: &TextConditioning,
    negative: Option<&TextConditioning>,
    args: &Stage1Args,
    noise: &mut dyn NoiseSource,
    hooks: &mut Hooks<'_>,
) -> Result<Tensor> {
    let (_, _, h, w) = image.dims4()?;
    let st = vae.scale_temporal();
    let ss = vae.scale_spatial();
    let t = (snap_frames(args.num_frames) - 1) / st + 1;
    let init = noise.normal(
        "init_noise",
        &[1, LATENT_CHANNELS, t, h / ss, w / ss],
        image.device(),
    )?;
    let cond = encode_condition(
        vae,
        &image.unsqueeze(2)?,
        "posterior_noise",
        noise,
        hooks,
        "cond.latent_mean",
    )?;
    let latents = Tensor::cat(&[&cond, &init.narrow(2, 1, t - 1)?], 2)?;
    denoise_stage1(dit, latents, 1, positive, negative, args, hooks)
}

/// The stage-1 schedule over `latents` whose first `cond_latents` latent frames are clean
/// condition (CFG as `args` and `negative` say); records and returns the final latents.
fn denoise_stage1<D: Denoiser>(
    dit: &D,
    latents: Tensor,
    cond_latents: usize,
    positive: &TextConditioning,
    negative: Option<&TextConditioning>,
    args: &Stage1Args,
    hooks: &mut Hooks<'_>,
) -> Result<Tensor> {
    let (text, guidance) = guidance_text(positive, negative, args.guidance_scale)?;
    let schedule = Schedule::stage1(args.steps, args.distill, args.shift);
    let out = denoise(
        dit,
        latents,
        &schedule,
        &text,
        guidance,
        Condition::InBatch(cond_latents),
        hooks,
    )?;
    hooks.record("output.final_latents", &out);
    Ok(out)
}

/// `generate_t2v` up to the final latents (normalized space, `[1, 16, T, h, w]`): pure
/// noise of `height × width` pixels, no condition latent, every frame denoised.
#[allow(clippy::too_many_arguments)]
pub fn generate_t2v<D: Denoiser, V: LatentCodec>(
    dit: &D,
    vae: &V,
    height: usize,
    width: usize,
    positive: &TextConditioning,
    negative: Option<&TextConditioning>,
    args: &Stage1Args,
    noise: &mut dyn NoiseSource,
    hooks: &mut Hooks<'_>,
) -> Result<Tensor> {
    let st = vae.scale_temporal();
    let ss = vae.scale_spatial();
    let t = (snap_frames(args.num_frames) - 1) / st + 1;
    let latents = noise.normal(
        "init_noise",
        &[1, LATENT_CHANNELS, t, height / ss, width / ss],
        positive.embeds.device(),
    )?;
    denoise_stage1(dit, latents, 0, positive, negative, args, hooks)
}

/// Video-continuation parameters.
#[derive(Debug, Clone)]
pub struct ContinuationArgs {
    /// Sampling parameters (frames count includes the condition frames).
    pub base: Stage1Args,
    /// Replace the low-noise tail by ten uniform steps (official default without distill).
    pub enhance_hf: bool,
}

/// `generate_vc` with `use_kv_cache=True` up to the final latents (condition latents
/// included). `cond_frames` are the clean condition pixels `[1, 3, Fc, H, W]`.
#[allow(clippy::too_many_arguments)]
pub fn generate_continuation<D: Denoiser, V: LatentCodec>(
    dit: &D,
    vae: &V,
    cond_frames: &Tensor,
    positive: &TextConditioning,
    negative: Option<&TextConditioning>,
    args: &ContinuationArgs,
    noise: &mut dyn NoiseSource,
    hooks: &mut Hooks<'_>,
) -> Result<Tensor> {
    let (_, _, fc, h, w) = cond_frames.dims5()?;
    let st = vae.scale_temporal();
    let ss = vae.scale_spatial();
    let t = (snap_frames(args.base.num_frames) - 1) / st + 1;
    let n_cond = 1 + (fc - 1) / st;
    let init = noise.normal(
        "init_noise",
        &[1, LATENT_CHANNELS, t, h / ss, w / ss],
        cond_frames.device(),
    )?;
    let cond = encode_condition(
        vae,
        cond_frames,
        "posterior_noise",
        noise,
        hooks,
        "cond.latent_mean",
    )?;
    let (text, guidance) = guidance_text(positive, negative, args.base.guidance_scale)?;
    let cache = dit.cache_condition(&cond, &text)?;
    let schedule = Schedule::continuation(
        args.base.steps,
        args.base.distill,
        args.base.shift,
        args.enhance_hf && !args.base.distill,
    );
    let noisy = init.narrow(2, n_cond, t - n_cond)?;
    let out = denoise(
        dit,
        noisy,
        &schedule,
        &text,
        guidance,
        Condition::Cached(&cache),
        hooks,
    )?;
    let out = Tensor::cat(&[&cond, &out], 2)?;
    hooks.record("output.final_latents", &out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rule() {
        assert_eq!(snap_frames(93), 93);
        assert_eq!(snap_frames(94), 93);
        assert_eq!(snap_frames(96), 97);
        assert_eq!(snap_frames(162), 161);
        assert_eq!(snap_frames(17), 17);
    }
}
