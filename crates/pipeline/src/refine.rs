//! The refinement stage (`generate_refine`): stage-1 frames upsampled to the 720p bucket
//! (and 15 → 30 fps), re-encoded, noised to `t_thresh`, and denoised with the refinement
//! LoRA and block sparse attention. Condition and noise parts are padded to multiples of 4
//! latents (the BSA block size in time).

use candle_core::Tensor;

use crate::api::RgbImage;
use crate::components::{Denoiser, LatentCodec, Result, TextConditioning};
use crate::denoise::{denoise, Condition};
use crate::hooks::Hooks;
use crate::noise::NoiseSource;
use crate::resample::upsample_video;
use crate::schedule::Schedule;
use crate::stage1::encode_condition;

/// Latent frames per BSA block in time.
const BSA_LATENT_GRANULARITY: usize = 4;

/// Refinement parameters.
#[derive(Debug, Clone)]
pub struct RefineArgs {
    /// Length of the base schedule (only the steps below `t_thresh` run).
    pub steps: usize,
    /// Noise level the upsampled video is mixed to (0.5).
    pub t_thresh: f32,
    /// Scheduler shift (12).
    pub shift: f32,
    /// Keep the frame count (no 15 → 30 fps doubling).
    pub spatial_only: bool,
}

/// The clean condition of a refinement segment, at the refinement size.
pub enum RefineCondition<'a> {
    /// None (text-to-video refinement).
    None,
    /// The condition image `[1, 3, H, W]` in `[-1, 1]`.
    Image(&'a Tensor),
    /// Refined frames of the previous segment `[1, 3, Fc, H, W]` in `[-1, 1]`.
    Video(&'a Tensor),
}

/// Frame bookkeeping of one refinement run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefineLayout {
    /// Frames after temporal upsampling (`2·F1`, or `F1` spatial-only).
    pub new_frames: usize,
    /// Condition frames after front padding.
    pub cond_frames: usize,
    /// Copies of the first frame padded in front.
    pub cond_frames_added: usize,
    /// Copies of the last frame padded at the back.
    pub noise_frames_added: usize,
    /// Condition latents.
    pub cond_latents: usize,
    /// Noise latents.
    pub noise_latents: usize,
}

fn round_up(v: usize, m: usize) -> usize {
    v.div_ceil(m) * m
}

impl RefineLayout {
    /// Layout for `stage1_frames` input frames and `cond_frames` condition frames.
    pub fn new(stage1_frames: usize, cond_frames: usize, spatial_only: bool, st: usize) -> Self {
        let new_frames = if spatial_only {
            stage1_frames
        } else {
            2 * stage1_frames
        };
        let noise_frames = new_frames.saturating_sub(cond_frames);
        let (mut cond_latents, mut cond_frames_added, mut ncf) = (0, 0, cond_frames);
        if cond_frames > 0 {
            cond_latents = round_up(1 + (cond_frames - 1).div_ceil(st), BSA_LATENT_GRANULARITY);
            cond_frames_added = 1 + (cond_latents - 1) * st - cond_frames;
            ncf = cond_frames + cond_frames_added;
        }
        let noise_latents = round_up(noise_frames.div_ceil(st), BSA_LATENT_GRANULARITY);
        let noise_frames_added = noise_latents * st - noise_frames;
        Self {
            new_frames,
            cond_frames: ncf,
            cond_frames_added,
            noise_frames_added,
            cond_latents,
            noise_latents,
        }
    }
}

/// Repeats frame `index` of `[1, 3, F, H, W]` `n` times along time.
fn repeat_frame(video: &Tensor, index: usize, n: usize) -> Result<Tensor> {
    let f = video.narrow(2, index, 1)?;
    Ok(Tensor::cat(&vec![&f; n], 2)?)
}

/// `generate_refine` up to the final latents; returns them with the frame layout (the
/// decoded video keeps frames `[cond_frames_added, cond_frames_added + new_frames)`).
/// Traces `trace.video_up_core`, `trace.video_up_latent_mean`, `trace.cond_clip_latent_mean`.
#[allow(clippy::too_many_arguments)]
pub fn generate_refine<D: Denoiser, V: LatentCodec>(
    dit: &D,
    vae: &V,
    stage1: &[RgbImage],
    height: usize,
    width: usize,
    condition: RefineCondition<'_>,
    text: &TextConditioning,
    args: &RefineArgs,
    noise: &mut dyn NoiseSource,
    hooks: &mut Hooks<'_>,
) -> Result<(Tensor, RefineLayout)> {
    let device = text.embeds.device().clone();
    let st = vae.scale_temporal();
    let cond_count = match condition {
        RefineCondition::None => 0,
        RefineCondition::Image(_) => 1,
        RefineCondition::Video(v) => v.dim(2)?,
    };
    let layout = RefineLayout::new(stage1.len(), cond_count, args.spatial_only, st);
    let core = upsample_video(stage1, height, width, layout.new_frames, &device)?;
    hooks.record("trace.video_up_core", &core);
    let last = core.dim(2)? - 1;
    // The official VAE encodes `1 + st·⌊(F−1)/st⌋` frames and never reads the rest. With a
    // condition the padded video has exactly that many; without one (text-to-video) it has
    // `st·noise_latents`, and the last `st − 1` back-padding frames are skipped: they are
    // not built here.
    let total = layout.cond_frames_added + core.dim(2)? + layout.noise_frames_added;
    let back = layout.noise_frames_added.saturating_sub((total - 1) % st);
    let mut parts = Vec::new();
    if layout.cond_frames_added > 0 {
        parts.push(repeat_frame(&core, 0, layout.cond_frames_added)?);
    }
    parts.push(core.clone());
    if back > 0 {
        parts.push(repeat_frame(&core, last, back)?);
    }
    let padded = Tensor::cat(&parts, 2)?;
    drop(parts);
    drop(core);
    let latent_up = encode_condition(
        vae,
        &padded,
        "posterior_noise_video_up",
        noise,
        hooks,
        "trace.video_up_latent_mean",
    )?;
    drop(padded);
    let mix = noise.normal("randn_like_mix", latent_up.dims(), &device)?;
    let t = args.t_thresh as f64;
    let mut latents = ((latent_up * (1.0 - t))? + (mix * t)?)?;

    let clip = match condition {
        RefineCondition::None => None,
        RefineCondition::Image(img) => Some(img.unsqueeze(2)?),
        RefineCondition::Video(v) => Some(v.clone()),
    };
    if let Some(clip) = clip {
        let keep = layout.cond_frames - layout.cond_frames_added;
        let clip = clip.narrow(2, clip.dim(2)? - keep, keep)?;
        let clip = if layout.cond_frames_added > 0 {
            Tensor::cat(
                &[&repeat_frame(&clip, 0, layout.cond_frames_added)?, &clip],
                2,
            )?
        } else {
            clip
        };
        let cond = encode_condition(
            vae,
            &clip,
            "posterior_noise_image",
            noise,
            hooks,
            "trace.cond_clip_latent_mean",
        )?;
        let n = cond.dim(2)?;
        let rest = latents.narrow(2, n, latents.dim(2)? - n)?;
        latents = Tensor::cat(&[&cond, &rest], 2)?;
    }
    let schedule = Schedule::refine(args.steps, args.shift, args.t_thresh);
    let out = denoise(
        dit,
        latents,
        &schedule,
        text,
        None,
        Condition::InBatch(layout.cond_latents),
        hooks,
    )?;
    hooks.record("output.final_latents", &out);
    Ok((out, layout))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers of the model spec (§1.5) and of the refine golden.
    #[test]
    fn layouts() {
        let l = RefineLayout::new(93, 1, false, 4);
        assert_eq!((l.cond_latents, l.cond_frames_added), (4, 12));
        assert_eq!((l.noise_latents, l.noise_frames_added), (48, 7));
        let g = RefineLayout::new(5, 1, false, 4);
        assert_eq!(g.new_frames, 10);
        assert_eq!((g.cond_frames_added, g.noise_frames_added), (12, 7));
        assert_eq!((g.cond_latents, g.noise_latents), (4, 4));
        // Text-to-video (no condition): 186 frames → 48 noise latents, 6 frames padded.
        let t = RefineLayout::new(93, 0, false, 4);
        assert_eq!(
            (t.cond_latents, t.noise_latents, t.noise_frames_added),
            (0, 48, 6)
        );
        let c = RefineLayout::new(93, 26, false, 4);
        assert_eq!(
            (c.cond_latents, c.cond_frames_added, c.noise_latents),
            (8, 3, 40)
        );
    }

    /// Without a condition the official encoder skips the last `(F−1) mod 4` padded frames;
    /// they are always back padding (never a real frame), and the decoded latents still
    /// cover every new frame.
    #[test]
    fn unconditioned_trim_only_drops_padding() {
        for f1 in (1..=93).step_by(4) {
            for spatial_only in [false, true] {
                let l = RefineLayout::new(f1, 0, spatial_only, 4);
                let total = l.new_frames + l.noise_frames_added;
                let trim = (total - 1) % 4;
                assert!(trim <= l.noise_frames_added, "{f1} {spatial_only}");
                assert_eq!((total - trim - 1) / 4 + 1, l.noise_latents);
                assert!(
                    4 * l.noise_latents - 3 >= l.new_frames,
                    "{f1} {spatial_only}"
                );
            }
        }
    }
}
