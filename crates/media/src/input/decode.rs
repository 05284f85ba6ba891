//! Image decoding: format sniffing, pixel cap, EXIF orientation, alpha flattening.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};

use super::error::ImageInputError;

/// Longest accepted side, in pixels (default of [`DecodeLimits::max_side`]).
///
/// 16384 holds every camera and phone image and is about WebP's own limit (16383); with the
/// 50 Mpx cap and the 8:1 ratio it only binds on panoramas over 16384 × 2048. Together with
/// the ratio it stops the 1 × 50,000,000 images that pass the pixel cap.
pub const MAX_SIDE: u32 = 16_384;

/// Largest accepted aspect ratio, long side over short side (default of
/// [`DecodeLimits::max_aspect_ratio`]): images from 1:8 to 8:1 are accepted.
///
/// The model's resolution buckets span height/width 0.26–4 (720p: 0.22–4); any image outside
/// that is resized into the extreme bucket, so its content is squeezed. Up to twice the
/// extreme bucket's ratio (a 2× squeeze on one axis) still gives a usable video and keeps
/// long phone panoramas working; beyond that the condition is a smear, and such files are
/// degenerate or hostile (the resize cost grows with the long side, not with the output).
pub const MAX_ASPECT_RATIO: u32 = 8;

/// Limits and choices for decoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecodeLimits {
    /// Most pixels (width × height) an image may declare (decompression-bomb guard).
    pub max_pixels: u64,
    /// Longest side an image may declare, in pixels.
    pub max_side: u32,
    /// Largest long-side / short-side ratio an image may declare.
    pub max_aspect_ratio: u32,
    /// Colour transparent pixels are composited over (RGB).
    pub background: [u8; 3],
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: 50_000_000,
            max_side: MAX_SIDE,
            max_aspect_ratio: MAX_ASPECT_RATIO,
            background: [255, 255, 255],
        }
    }
}

/// Refuses declared sizes over the pixel cap, the side limit or the aspect-ratio limit
/// (checked from the header, before any pixel is decoded).
fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), ImageInputError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(ImageInputError::ImageTooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    if pixels == 0 {
        return Err(ImageInputError::Corrupt("the image has no pixels".into()));
    }
    if width.max(height) > limits.max_side {
        return Err(ImageInputError::SideTooLong {
            width,
            height,
            max_side: limits.max_side,
        });
    }
    let (long, short) = (width.max(height), width.min(height));
    if u64::from(long) > u64::from(short) * u64::from(limits.max_aspect_ratio) {
        return Err(ImageInputError::AspectRatio {
            width,
            height,
            max_ratio: limits.max_aspect_ratio,
        });
    }
    Ok(())
}

/// A decoded image: RGB8, row-major, upright (the contract's one RGB image type).
pub use longcat_core::RgbImage as DecodedImage;

/// Decodes JPEG, PNG, WebP or GIF (first frame) bytes. `content_type` is only used to word
/// the error when the bytes are not an image.
pub fn decode_image(
    bytes: &[u8],
    limits: &DecodeLimits,
    content_type: Option<&str>,
) -> Result<DecodedImage, ImageInputError> {
    if bytes.is_empty() {
        return Err(ImageInputError::Empty);
    }
    let unsupported = || ImageInputError::UnsupportedFormat {
        content_type: content_type.map(str::to_string),
    };
    let format = image::guess_format(bytes).map_err(|_| unsupported())?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif
    ) {
        return Err(unsupported());
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut alloc_limits = Limits::default();
    // Worst case 16-bit RGBA (8 bytes/pixel) plus decoder scratch.
    alloc_limits.max_alloc = Some(limits.max_pixels.saturating_mul(16));
    reader.limits(alloc_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_error(e, None, limits))?;

    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| map_error(e, Some((width, height)), limits))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(flatten(img, limits.background))
}

fn map_error(e: ImageError, dims: Option<(u32, u32)>, limits: &DecodeLimits) -> ImageInputError {
    match e {
        ImageError::Limits(_) => {
            let (width, height) = dims.unwrap_or((0, 0));
            ImageInputError::ImageTooLarge {
                width,
                height,
                max_pixels: limits.max_pixels,
            }
        }
        ImageError::Unsupported(u) => ImageInputError::Corrupt(format!("unsupported variant: {u}")),
        other => ImageInputError::Corrupt(other.to_string()),
    }
}

/// Drops alpha by compositing over `background`.
fn flatten(img: DynamicImage, background: [u8; 3]) -> DecodedImage {
    let (width, height) = (img.width(), img.height());
    if !img.color().has_alpha() {
        return DecodedImage {
            width,
            height,
            data: img.into_rgb8().into_raw(),
        };
    }
    let rgba = img.into_rgba8();
    let mut data = Vec::with_capacity(width as usize * height as usize * 3);
    for px in rgba.as_raw().chunks_exact(4) {
        let a = u32::from(px[3]);
        for c in 0..3 {
            let v = u32::from(px[c]) * a + u32::from(background[c]) * (255 - a);
            data.push(((v + 127) / 255) as u8);
        }
    }
    DecodedImage {
        width,
        height,
        data,
    }
}
