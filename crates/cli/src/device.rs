//! `--device`: where the model runs; `--text-encoder`: where the text encoder stays.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use longcat_pipeline::text_encoder::TextEncoderPolicy;

/// Help text shared by the commands that take `--device`.
pub const DEVICE_HELP: &str =
    "auto (the first CUDA GPU when this build has the `cuda` feature and \
     one is present, else the CPU), cpu, cuda or cuda:N";

/// Help text shared by the commands that take `--text-encoder`.
pub const TEXT_ENCODER_HELP: &str =
    "Where the umT5 text encoder stays between jobs: resident (on the device all the time), \
     offload (default: moved to host RAM once the prompts are encoded and back for the next \
     job; a no-op on the CPU device) or reload (dropped after encoding, re-read from the \
     memory-mapped checkpoint for the next job). See docs/memory.md";

/// Help text shared by the commands that take `--vae-tiling`.
pub const VAE_TILING_HELP: &str =
    "Spatial tiling of VAE encode and decode, TILE[,OVERLAP] in latent pixels (8 video pixels \
     each; OVERLAP defaults to TILE/4), e.g. 32,8. Off by default (whole frames, as the \
     official code). Bounds the VAE's memory by the tile instead of the frame; the output \
     differs slightly from the untiled decode near tile borders. See docs/vae.md";

/// Parses `resident`, `offload` or `reload`.
pub fn parse_text_encoder(spec: &str) -> Result<TextEncoderPolicy> {
    spec.parse::<TextEncoderPolicy>()
        .map_err(|e| anyhow::anyhow!(e))
}

/// Parses `auto`, `cpu`, `cuda` or `cuda:N` and opens the device.
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec.trim() {
        "auto" => Device::cuda_if_available(0).context("probing for a CUDA device"),
        "cpu" => Ok(Device::Cpu),
        "cuda" => open_cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => open_cuda(ordinal),
            _ => bail!("bad device '{other}' (expected auto, cpu, cuda or cuda:N)"),
        },
    }
}

fn open_cuda(ordinal: usize) -> Result<Device> {
    let hint = if cfg!(feature = "cuda") {
        ""
    } else {
        " (this build has no CUDA support: cargo build --release -p longcat-cli --features cuda)"
    };
    Device::new_cuda(ordinal).with_context(|| format!("opening CUDA device {ordinal}{hint}"))
}

/// A short name for logs: `cpu` or `cuda:N`.
pub use longcat_pipeline::generator::device_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_encoder_policies() {
        for (spec, want) in [
            ("resident", TextEncoderPolicy::Resident),
            (" Offload ", TextEncoderPolicy::Offload),
            ("reload", TextEncoderPolicy::Reload),
        ] {
            assert_eq!(parse_text_encoder(spec).unwrap(), want);
        }
        let e = parse_text_encoder("gpu").unwrap_err().to_string();
        assert!(e.contains("resident, offload or reload"), "{e}");
        assert_eq!(TextEncoderPolicy::default(), TextEncoderPolicy::Offload);
    }

    #[test]
    fn parses_the_cpu_and_refuses_nonsense() {
        assert!(matches!(parse_device("cpu").unwrap(), Device::Cpu));
        assert!(matches!(parse_device(" cpu ").unwrap(), Device::Cpu));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda1", ""] {
            let e = parse_device(bad).unwrap_err().to_string();
            assert!(e.contains("bad device"), "{bad}: {e}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn auto_is_the_cpu_and_cuda_explains_the_missing_feature() {
        assert!(matches!(parse_device("auto").unwrap(), Device::Cpu));
        let e = format!("{:#}", parse_device("cuda:1").unwrap_err());
        assert!(
            e.contains("opening CUDA device 1") && e.contains("--features cuda"),
            "{e}"
        );
        assert_eq!(device_name(&Device::Cpu), "cpu");
    }
}
