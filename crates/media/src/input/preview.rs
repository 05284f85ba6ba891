//! A small JPEG copy of an input image, for services that look at it (prompt expansion).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use longcat_core::RgbImage;

/// JPEG quality of previews.
const PREVIEW_QUALITY: u8 = 90;

/// Why a preview could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// The pixel buffer does not hold `width * height * 3` bytes.
    #[error("image buffer holds {got} bytes, {width}x{height} RGB needs {want}")]
    BadBuffer {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        want: usize,
    },
    /// The JPEG encoder failed.
    #[error("JPEG encoding: {0}")]
    Encode(#[from] image::ImageError),
}

/// `image` as a JPEG whose longer side is at most `max_side` pixels (aspect kept; never
/// enlarged).
pub fn jpeg_preview(image: &RgbImage, max_side: u32) -> Result<Vec<u8>, PreviewError> {
    let want = image.width as usize * image.height as usize * 3;
    let bad = || PreviewError::BadBuffer {
        width: image.width,
        height: image.height,
        got: image.data.len(),
        want,
    };
    if image.data.len() != want {
        return Err(bad());
    }
    let buffer = image::ImageBuffer::<image::Rgb<u8>, &[u8]>::from_raw(
        image.width,
        image.height,
        &image.data,
    )
    .ok_or_else(bad)?;
    let (w, h) = preview_size(image.width, image.height, max_side.max(1));
    let mut out = Cursor::new(Vec::new());
    let mut encoder = JpegEncoder::new_with_quality(&mut out, PREVIEW_QUALITY);
    if (w, h) == (image.width, image.height) {
        encoder.encode_image(&buffer)?;
    } else {
        encoder.encode_image(&image::imageops::resize(
            &buffer,
            w,
            h,
            FilterType::Triangle,
        ))?;
    }
    Ok(out.into_inner())
}

/// The size of a `width`×`height` image scaled so its longer side is at most `max_side`.
fn preview_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_side {
        return (width, height);
    }
    let scale =
        |v: u32| ((v as u64 * max_side as u64 + long as u64 / 2) / long as u64).max(1) as u32;
    (scale(width), scale(height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(width: u32, height: u32) -> RgbImage {
        RgbImage {
            width,
            height,
            data: vec![128; (width * height * 3) as usize],
        }
    }

    #[test]
    fn large_images_shrink_to_the_longer_side_and_small_ones_stay() {
        assert_eq!(preview_size(4000, 1000, 1024), (1024, 256));
        assert_eq!(preview_size(1000, 4000, 1024), (256, 1024));
        assert_eq!(preview_size(640, 480, 1024), (640, 480));
        assert_eq!(preview_size(10000, 1, 100), (100, 1));
    }

    #[test]
    fn the_preview_is_a_jpeg_of_the_scaled_size() {
        let jpeg = jpeg_preview(&gray(300, 150), 100).unwrap();
        let back = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (100, 50));
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    }

    #[test]
    fn a_short_buffer_is_an_error() {
        let mut img = gray(4, 4);
        img.data.pop();
        assert!(matches!(
            jpeg_preview(&img, 8),
            Err(PreviewError::BadBuffer {
                want: 48,
                got: 47,
                ..
            })
        ));
    }
}
