//! Image decoding: format sniffing, pixel cap, EXIF orientation, alpha flattening.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};

use super::error::ImageInputError;

/// Limits and choices for decoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeLimits {
    /// Most pixels (width × height) an image may declare (decompression-bomb guard).
    pub max_pixels: u64,
    /// Colour transparent pixels are composited over (RGB).
    pub background: [u8; 3],
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: 50_000_000,
            background: [255, 255, 255],
        }
    }
}

/// A decoded image: RGB8, row-major, upright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub data: Vec<u8>,
}

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
