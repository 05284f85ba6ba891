//! `pipeline_refine`: `refine::generate_refine` (refinement LoRA, block sparse attention,
//! `t_thresh` noise mix, BSA padding), then the decode with the padding frames dropped.

use std::collections::BTreeMap;

use anyhow::{ensure, Context};
use candle_core::Tensor;
use longcat_pipeline::api::CancelToken;
use longcat_pipeline::components::LatentCodec;
use longcat_pipeline::components::{denormalize_latents, Denoiser, DenoiserMode, LoraKind};
use longcat_pipeline::hooks::MapTrace;
use longcat_pipeline::image::to_model_input;
use longcat_pipeline::output::to_unit;
use longcat_pipeline::refine::{generate_refine, RefineArgs, RefineCondition, RefineLayout};
use longcat_pipeline::schedule::Schedule;

use super::{
    check_recorded, check_schedule, encode_prompt, ensure_noise_used, injected_noise,
    load_networks, meta_bool, meta_f64, meta_usize, register_lora, rgb_image, tracing_hooks,
};
use crate::golden::GoldenFile;

/// Fails unless our frame layout is the one in `meta.derived`.
fn check_layout(golden: &GoldenFile, l: &RefineLayout) -> anyhow::Result<()> {
    let Some(derived) = golden.meta().get("derived") else {
        return Ok(());
    };
    let ours = [
        ("new_frame_size", l.new_frames),
        ("num_cond_frames_added", l.cond_frames_added),
        ("num_noise_frames_added", l.noise_frames_added),
        ("num_cond_latents", l.cond_latents),
        ("num_noise_latents", l.noise_latents),
        ("latent_frames", l.cond_latents + l.noise_latents),
    ];
    for (key, value) in ours {
        if let Some(v) = derived.get(key) {
            let want = v.as_u64().with_context(|| format!("derived.{key}"))? as usize;
            ensure!(want == value, "derived.{key}: golden {want}, ours {value}");
        }
    }
    Ok(())
}

/// Checks every tensor of a refinement pipeline golden.
pub fn check(golden: &GoldenFile) -> anyhow::Result<()> {
    let mut nets = load_networks(golden)?;
    register_lora(golden, &mut nets.dit, LoraKind::Refinement)?;
    nets.dit.set_mode(DenoiserMode {
        lora: Some(LoraKind::Refinement),
        bsa: true,
    })?;
    let text =
        encode_prompt(golden, &nets.text, "prompt")?.context("golden has no input.prompt")?;

    let stage1 = golden.input_cpu("input.stage1_video_uint8")?;
    let frames = (0..stage1.dim(0)?)
        .map(|i| rgb_image(&stage1.get(i)?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let height = meta_usize(golden, "/args/height")?;
    let width = meta_usize(golden, "/args/width")?;
    let num_cond = meta_usize(golden, "/args/num_cond_frames")?;
    let image = match num_cond {
        0 => None,
        1 => {
            let img = rgb_image(&golden.input_cpu("input.image_uint8")?)?;
            ensure!(
                (img.height as usize, img.width as usize) == (height, width),
                "condition image is {}x{}, not the refinement size {width}x{height}",
                img.width,
                img.height
            );
            Some(to_model_input(&img, golden.device())?)
        }
        n => anyhow::bail!("{n} condition frames: only image conditions are in this golden kind"),
    };
    let condition = match &image {
        None => RefineCondition::None,
        Some(img) => RefineCondition::Image(img),
    };
    let args = RefineArgs {
        steps: meta_usize(golden, "/args/num_inference_steps")?,
        t_thresh: meta_f64(golden, "/args/t_thresh")? as f32,
        shift: meta_f64(golden, "/scheduler_config/shift")? as f32,
        spatial_only: meta_bool(golden, "/args/spatial_refine_only")?,
    };
    check_schedule(
        golden,
        &Schedule::refine(args.steps, args.shift, args.t_thresh),
    )?;

    let mut noise = injected_noise(golden)?;
    let mut trace = MapTrace::default();
    let cancel = CancelToken::new();
    let mut on_step = |_s: u32, _t: u32| {};
    let mut hooks = tracing_hooks(&cancel, &mut on_step, &mut trace);
    let (latents, layout) = generate_refine(
        &nets.dit, &nets.vae, &frames, height, width, condition, &text, &args, &mut noise,
        &mut hooks,
    )?;
    check_layout(golden, &layout)?;
    ensure_noise_used(&noise)?;

    // Decode and drop the padding frames, as the pipeline returns the video.
    let z = denormalize_latents(&nets.vae, &latents)?;
    let video = nets.vae.decode(&z)?;
    let kept = to_unit(&video.narrow(2, layout.cond_frames_added, layout.new_frames)?)?;
    let mut recorded: BTreeMap<String, Tensor> = trace.0;
    recorded.insert("output.decoder_input".into(), z);
    recorded.insert("output.decoded_video".into(), video);
    recorded.insert("output.video_np".into(), kept.permute((0, 2, 3, 4, 1))?);
    check_recorded(golden, &recorded);
    Ok(())
}
