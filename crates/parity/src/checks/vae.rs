//! Checker for the `vae` golden: encode (video and single image), posterior sample,
//! latent (de)normalization and decode.

use std::sync::Arc;

use anyhow::Context;
use candle_core::{DType, Device};
use longcat_model::checkpoint::TrackedWeights;
use longcat_model::vae::{VaeConfig, WanVae};

use crate::checks::umt5::weights_path;
use crate::golden::{GoldenFile, Tolerance};

/// Checks every tensor of a `vae` golden file.
pub fn check(golden: &GoldenFile) -> anyhow::Result<()> {
    let cfg: VaeConfig =
        serde_json::from_value(golden.meta_at("/config")?.clone()).context("meta.config")?;
    let path = weights_path(golden);
    let weights = Arc::new(TrackedWeights::open_file(&path)?);
    let vae = weights
        .build(DType::F32, &Device::Cpu, |vb| WanVae::new(&cfg, vb))
        .with_context(|| path.display().to_string())?;
    let unused = weights.unused();
    anyhow::ensure!(
        unused.is_empty(),
        "{} holds tensors the VAE never used: {unused:?}",
        path.display()
    );
    let tol = Tolerance::COMPONENT;

    let video = golden.input("video")?;
    let post = vae.encode(&video)?;
    golden.check_float("encode.mean", &post.mean, tol);
    golden.check_float("encode.logvar", &post.logvar, tol);
    golden.check_float("encode.std", &post.std()?, tol);
    golden.check_float(
        "encode.mean_normalized",
        &vae.normalize_latents(&post.mean)?,
        tol,
    );
    let noise = golden.input("encode.sample_noise")?;
    golden.check_float("encode.sample", &post.sample(&noise)?, tol);

    let image = golden.input("image")?;
    let img_post = vae.encode(&image)?;
    golden.check_float("encode_image.mean", &img_post.mean, tol);
    golden.check_float("encode_image.logvar", &img_post.logvar, tol);

    let z_norm = golden.input("decode.z_normalized")?;
    let z = vae.denormalize_latents(&z_norm)?;
    golden.check_float("decode.z", &z, tol);
    golden.check_float("decode.video", &vae.decode(&z)?, tol);

    golden.check_float("decode_of_encode_mean.video", &vae.decode(&post.mean)?, tol);
    Ok(())
}
