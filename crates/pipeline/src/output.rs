//! From final latents to frames: denormalize, VAE-decode (in temporal chunks), map to
//! `[0, 1]` and to 8-bit RGB frames, handing each frame on as soon as it is decoded.

use candle_core::{DType, Tensor};

use crate::api::{CancelToken, VideoFrame};
use crate::components::{denormalize_latents, LatentCodec, Result};
use crate::hooks::Hooks;

/// `(x/2 + 0.5).clamp(0, 1)`: decoder output to the pipeline's `[0, 1]` video.
pub fn to_unit(video: &Tensor) -> Result<Tensor> {
    Ok(((video / 2.0)? + 0.5)?.clamp(0f32, 1f32)?)
}

/// Decodes normalized latents to `[1, 3, F, H, W]` in `[0, 1]` at once. Traces
/// `output.decoder_input`, `output.decoded_video` and `output.video_np` (`[1, F, H, W, 3]`).
pub fn decode_video<V: LatentCodec>(
    vae: &V,
    latents: &Tensor,
    hooks: &mut Hooks<'_>,
) -> Result<Tensor> {
    let z = denormalize_latents(vae, latents)?;
    hooks.record("output.decoder_input", &z);
    let video = vae.decode(&z)?;
    hooks.record("output.decoded_video", &video);
    let unit = to_unit(&video)?;
    hooks.record("output.video_np", &unit.permute((0, 2, 3, 4, 1))?);
    Ok(unit)
}

/// `[1, 3, F, H, W]` in `[0, 1]` → 8-bit frames (`(x·255)` truncated, as the demos do).
pub fn unit_to_frames(unit: &Tensor, first_index: u32) -> Result<Vec<VideoFrame>> {
    let (_, _, f, h, w) = unit.dims5()?;
    let bytes = (unit.to_dtype(DType::F32)? * 255.0)?
        .squeeze(0)?
        .permute((1, 2, 3, 0))?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let per = h * w * 3;
    Ok((0..f)
        .map(|i| VideoFrame {
            index: first_index + i as u32,
            width: w as u32,
            height: h as u32,
            data: bytes[i * per..(i + 1) * per]
                .iter()
                .map(|&v| v.clamp(0.0, 255.0) as u8)
                .collect(),
        })
        .collect())
}

/// Which decoded frames of a segment are delivered: `[skip, skip + take)`.
#[derive(Debug, Clone, Copy)]
pub struct FrameWindow {
    /// Decoded frames dropped at the front (padding, condition frames).
    pub skip: usize,
    /// Frames delivered after that.
    pub take: usize,
}

/// Decodes latents chunk by chunk and calls `deliver` for every frame inside `window`,
/// numbering them from `first_index`. Returns the number of frames delivered. `cancel` is
/// checked before decoding and after every decoded chunk (so a cancel stops the decoder
/// and the frame consumer within one chunk).
pub fn stream_frames<V: LatentCodec>(
    vae: &V,
    latents: &Tensor,
    window: FrameWindow,
    first_index: u32,
    cancel: &CancelToken,
    deliver: &mut dyn FnMut(VideoFrame) -> Result<()>,
) -> Result<usize> {
    cancel.check()?;
    let z = denormalize_latents(vae, latents)?;
    let mut seen = 0usize;
    let mut delivered = 0usize;
    vae.decode_chunks(&z, &mut |chunk: Tensor| {
        cancel.check()?;
        let f = chunk.dim(2)?;
        let lo = window.skip.max(seen);
        let hi = (window.skip + window.take).min(seen + f);
        if lo < hi {
            let part = to_unit(&chunk.narrow(2, lo - seen, hi - lo)?)?;
            for frame in unit_to_frames(&part, first_index + delivered as u32)? {
                deliver(frame)?;
                delivered += 1;
            }
        }
        seen += f;
        Ok(())
    })?;
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn frames_truncate() {
        let t = Tensor::full(0.999f32, (1, 3, 2, 1, 1), &Device::Cpu).unwrap();
        let f = unit_to_frames(&t, 5).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].index, 6);
        assert_eq!(f[0].data, vec![254, 254, 254]);
    }
}
