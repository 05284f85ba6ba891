//! `pipeline_i2v` (full stage 1 with CFG) and `pipeline_i2v_distill` (cfg_step LoRA,
//! distilled schedule, no CFG): `stage1::generate_i2v`, then the decode.

use anyhow::{ensure, Context};
use longcat_pipeline::api::CancelToken;
use longcat_pipeline::components::{Denoiser, DenoiserMode, LoraKind};
use longcat_pipeline::hooks::MapTrace;
use longcat_pipeline::image::{resize_lanczos, to_model_input};
use longcat_pipeline::output::decode_video;
use longcat_pipeline::schedule::Schedule;
use longcat_pipeline::stage1::{generate_i2v, snap_frames, Stage1Args};

use super::{
    check_recorded, check_schedule, encode_prompt, ensure_noise_used, injected_noise,
    load_networks, meta_bool, meta_f64, meta_usize, register_lora, rgb_image, tracing_hooks,
};
use crate::golden::{GoldenFile, Tolerance};

/// Checks every tensor of an image-to-video pipeline golden.
pub fn check(golden: &GoldenFile) -> anyhow::Result<()> {
    let mut nets = load_networks(golden)?;
    let distill = meta_bool(golden, "/args/use_distill")?;
    let lora = if golden.meta().get("lora").is_some() {
        ensure!(
            distill,
            "a LoRA without use_distill: the pipeline only runs stage 1 with the cfg_step LoRA"
        );
        register_lora(golden, &mut nets.dit, LoraKind::CfgStep)?;
        Some(LoraKind::CfgStep)
    } else {
        None
    };
    nets.dit.set_mode(DenoiserMode { lora, bsa: false })?;

    let positive =
        encode_prompt(golden, &nets.text, "prompt")?.context("golden has no input.prompt")?;
    let negative = encode_prompt(golden, &nets.text, "negative_prompt")?;

    // The condition image at the golden's size (the goldens bypass the buckets).
    let image = rgb_image(&golden.input_cpu("input.image_uint8")?)?;
    let height = meta_usize(golden, "/args/height")? as u32;
    let width = meta_usize(golden, "/args/width")? as u32;
    let image = resize_lanczos(&image, width, height)?;
    let pixels = to_model_input(&image, golden.device())?;
    if golden.has("input.image_preprocessed") {
        golden.check_float("input.image_preprocessed", &pixels, Tolerance::PIPELINE);
    }

    let args = Stage1Args {
        num_frames: meta_usize(golden, "/args/num_frames")?,
        steps: meta_usize(golden, "/args/num_inference_steps")?,
        distill,
        guidance_scale: meta_f64(golden, "/args/guidance_scale")? as f32,
        shift: meta_f64(golden, "/scheduler_config/shift")? as f32,
    };
    ensure!(
        snap_frames(args.num_frames) == args.num_frames,
        "num_frames {} is not 4k+1",
        args.num_frames
    );
    check_schedule(golden, &Schedule::stage1(args.steps, distill, args.shift))?;

    let mut noise = injected_noise(golden)?;
    let mut trace = MapTrace::default();
    let cancel = CancelToken::new();
    let mut steps_done = 0u32;
    let mut on_step = |s: u32, _t: u32| steps_done = s;
    let mut hooks = tracing_hooks(&cancel, &mut on_step, &mut trace);
    let latents = generate_i2v(
        &nets.dit,
        &nets.vae,
        &pixels,
        &positive,
        negative.as_ref(),
        &args,
        &mut noise,
        &mut hooks,
    )?;
    decode_video(&nets.vae, &latents, &mut hooks)?;
    ensure!(
        steps_done as usize == args.steps,
        "{steps_done} of {} steps reported",
        args.steps
    );
    ensure_noise_used(&noise)?;
    check_recorded(golden, &trace.0);
    Ok(())
}
