//! Checker for the `vae` golden: encode (video and single image), posterior sample,
//! latent (de)normalization and decode.

use std::sync::Arc;

use anyhow::Context;
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
        .build_exact(golden.dtype(), golden.device(), |vb| WanVae::new(&cfg, vb))
        .with_context(|| path.display().to_string())?;
    let tol = Tolerance::COMPONENT;

    // The VAE takes its input in its own dtype (the pipeline's codec casts the same way).
    let dtype = golden.dtype();
    let video = golden.input("video")?.to_dtype(dtype)?;
    let post = vae.encode(&video)?;
    golden.check_float("encode.mean", &post.mean, tol);
    golden.check_float("encode.logvar", &post.logvar, tol);
    golden.check_float("encode.std", &post.std()?, tol);
    golden.check_float(
        "encode.mean_normalized",
        &vae.normalize_latents(&post.mean)?,
        tol,
    );
    let noise = golden.input("encode.sample_noise")?.to_dtype(dtype)?;
    golden.check_float("encode.sample", &post.sample(&noise)?, tol);

    let image = golden.input("image")?.to_dtype(dtype)?;
    let img_post = vae.encode(&image)?;
    golden.check_float("encode_image.mean", &img_post.mean, tol);
    golden.check_float("encode_image.logvar", &img_post.logvar, tol);

    let z_norm = golden.input("decode.z_normalized")?;
    let z = vae.denormalize_latents(&z_norm.to_dtype(dtype)?)?;
    golden.check_float("decode.z", &z, tol);
    golden.check_float("decode.video", &vae.decode(&z)?, tol);

    golden.check_float("decode_of_encode_mean.video", &vae.decode(&post.mean)?, tol);
    Ok(())
}
