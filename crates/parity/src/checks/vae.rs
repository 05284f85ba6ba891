//! Checker for the `vae` golden: encode (posterior, sample, normalisation), the single-frame
//! condition path, denormalisation and decode.

use anyhow::Context;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use longcat_model::vae::{VaeConfig, WanVae};

use super::umt5::weights_path;
use crate::golden::{GoldenFile, Tolerance};

/// Loads the VAE named by the golden's weights file with the config from `meta.config`.
pub(crate) fn load_vae(golden: &GoldenFile) -> anyhow::Result<WanVae> {
    let cfg: VaeConfig =
        serde_json::from_value(golden.meta_at("/config")?.clone()).context("meta.config")?;
    let path = weights_path(golden);
    // SAFETY: the weights file is memory-mapped read-only and not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu)? };
    WanVae::new(&cfg, vb).with_context(|| path.display().to_string())
}

/// Checks every output of a `vae` golden file.
pub fn check(golden: &GoldenFile) -> anyhow::Result<()> {
    let vae = load_vae(golden)?;
    let tol = Tolerance::COMPONENT;
    if golden.has("video") {
        let post = vae.encode(&golden.input("video")?)?;
        golden.check_float("encode.mean", &post.mean, tol);
        golden.check_float("encode.logvar", &post.logvar, tol);
        golden.check_float("encode.std", &post.std()?, tol);
        let noise = golden.input("encode.sample_noise")?;
        golden.check_float("encode.sample", &post.sample(&noise)?, tol);
        golden.check_float(
            "encode.mean_normalized",
            &vae.normalize_latents(&post.mean)?,
            tol,
        );
        if golden.has("decode_of_encode_mean.video") {
            golden.check_float("decode_of_encode_mean.video", &vae.decode(&post.mean)?, tol);
        }
    }
    if golden.has("image") {
        let post = vae.encode(&golden.input("image")?)?;
        golden.check_float("encode_image.mean", &post.mean, tol);
        golden.check_float("encode_image.logvar", &post.logvar, tol);
    }
    if golden.has("decode.z_normalized") {
        let z = vae.denormalize_latents(&golden.input("decode.z_normalized")?)?;
        golden.check_float("decode.z", &z, tol);
        golden.check_float("decode.video", &vae.decode(&z)?, tol);
    }
    Ok(())
}
