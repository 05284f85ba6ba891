//! Decoding tests: formats, orientation, alpha, bombs and corrupt files.

mod common;

use common::*;
use image::{Rgba, RgbaImage};
use longcat_media::fixtures::{png_flat_gray, png_header_claiming};
use longcat_media::input::{decode_image, DecodeLimits, ImageInputError};

fn decode(bytes: &[u8]) -> Result<longcat_media::DecodedImage, ImageInputError> {
    decode_image(bytes, &DecodeLimits::default(), None)
}

fn assert_quadrants(img: &longcat_media::DecodedImage, tol: f32) {
    let (w, h) = (img.width, img.height);
    let s = 4;
    let probes = [
        (w / 4 - s / 2, h / 4 - s / 2, RED),
        (3 * w / 4 - s / 2, h / 4 - s / 2, GREEN),
        (w / 4 - s / 2, 3 * h / 4 - s / 2, BLUE),
        (3 * w / 4 - s / 2, 3 * h / 4 - s / 2, YELLOW),
    ];
    for (x, y, want) in probes {
        let got = mean_rgb(&img.data, w, x, y, s);
        assert!(
            close_to(got, want, tol),
            "at ({x},{y}) got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn decodes_png_jpeg_webp() {
    let src = quadrants(32, 16);
    for (name, bytes, tol) in [
        ("png", png_bytes(&src), 0.0),
        ("jpeg", jpeg_bytes(&src), 12.0),
        ("webp", webp_bytes(&src), 0.0),
    ] {
        let img = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width, img.height), (32, 16), "{name}");
        assert_eq!(img.data.len(), 32 * 16 * 3, "{name}");
        assert_quadrants(&img, tol);
    }
}

#[test]
fn gif_gives_the_first_frame() {
    let bytes = gif_bytes(8, 8, &[GREEN, RED, BLUE]);
    let img = decode(&bytes).unwrap();
    assert_eq!((img.width, img.height), (8, 8));
    assert!(close_to(mean_rgb(&img.data, 8, 0, 0, 8), GREEN, 8.0));
}

#[test]
fn exif_orientation_is_applied() {
    let src = quadrants(32, 16);
    // 6 = rotate 90° clockwise to display: the bottom-left (blue) quadrant goes top-left.
    let rotated = decode(&with_exif_orientation(&jpeg_bytes(&src), 6)).unwrap();
    assert_eq!((rotated.width, rotated.height), (16, 32));
    let top_left = mean_rgb(&rotated.data, 16, 2, 2, 4);
    assert!(close_to(top_left, BLUE, 12.0), "{top_left:?}");
    let bottom_right = mean_rgb(&rotated.data, 16, 10, 26, 4);
    assert!(close_to(bottom_right, GREEN, 12.0), "{bottom_right:?}");
    // 1 = upright: unchanged.
    let upright = decode(&with_exif_orientation(&jpeg_bytes(&src), 1)).unwrap();
    assert_eq!((upright.width, upright.height), (32, 16));
    assert_quadrants(&upright, 12.0);
}

#[test]
fn alpha_is_flattened_over_the_background() {
    let mut img = RgbaImage::new(2, 1);
    img.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
    img.put_pixel(1, 0, Rgba([255, 0, 0, 128]));
    let bytes = png_rgba_bytes(&img);
    let white = decode(&bytes).unwrap();
    assert_eq!(white.data, vec![255, 255, 255, 255, 127, 127]);
    let black = decode_image(
        &bytes,
        &DecodeLimits {
            background: [0, 0, 0],
            ..DecodeLimits::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(black.data, vec![0, 0, 0, 128, 0, 0]);
}

#[test]
fn decompression_bomb_header_is_refused_without_decoding() {
    let bytes = png_header_claiming(20_000, 20_000);
    assert!(bytes.len() < 100);
    let start = std::time::Instant::now();
    let err = decode(&bytes).unwrap_err();
    assert!(start.elapsed().as_millis() < 500);
    assert_eq!(
        err,
        ImageInputError::ImageTooLarge {
            width: 20_000,
            height: 20_000,
            max_pixels: DecodeLimits::default().max_pixels
        }
    );
    assert_eq!(err.error_type(), "image_too_large");
    assert!(err.message().contains("20000x20000"), "{err}");
}

#[test]
fn truncated_and_corrupt_files_are_clear_errors() {
    let src = quadrants(64, 64);
    let jpeg = jpeg_bytes(&src);
    let png = png_bytes(&src);
    let webp = webp_bytes(&src);
    let gif = gif_bytes(16, 16, &[RED, GREEN]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated jpeg", jpeg[..jpeg.len() / 2].to_vec()),
        ("jpeg header only", jpeg[..20].to_vec()),
        ("truncated png", png[..png.len() / 2].to_vec()),
        ("truncated webp", webp[..webp.len() / 2].to_vec()),
        ("truncated gif", gif[..gif.len() / 3].to_vec()),
        ("png magic then junk", {
            let mut v = png[..8].to_vec();
            v.extend_from_slice(&[0xAB; 64]);
            v
        }),
    ];
    for (name, bytes) in cases {
        let err = decode(&bytes).expect_err(name);
        assert!(
            matches!(err, ImageInputError::Corrupt(_)),
            "{name}: {err:?}"
        );
        assert_eq!(err.error_type(), "image_load_error", "{name}");
    }
}

#[test]
fn non_images_are_unsupported() {
    let html = b"<!DOCTYPE html><html><body>not an image</body></html>";
    let err = decode_image(html, &DecodeLimits::default(), Some("text/html")).unwrap_err();
    assert_eq!(
        err,
        ImageInputError::UnsupportedFormat {
            content_type: Some("text/html".into())
        }
    );
    assert!(err.message().contains("text/html"), "{err}");
    // A real image format we do not accept (BMP).
    let bmp = b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0";
    assert!(matches!(
        decode(bmp).unwrap_err(),
        ImageInputError::UnsupportedFormat { .. }
    ));
    assert_eq!(decode(b"").unwrap_err(), ImageInputError::Empty);
}

/// 1 × 50,000,000 and 50,000,000 × 1 pass the pixel cap (exactly 50 Mpx) but are refused from
/// the header by the side and aspect limits; the limits apply to both orientations.
#[test]
fn extreme_aspect_images_are_refused_from_the_header() {
    let limits = DecodeLimits::default();
    for (w, h) in [(1u32, 50_000_000u32), (50_000_000, 1)] {
        let bytes = png_flat_gray(w, h);
        eprintln!("{w}x{h} PNG: {} bytes", bytes.len());
        assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
        let err = decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            ImageInputError::SideTooLong {
                width: w,
                height: h,
                max_side: limits.max_side
            }
        );
        assert_eq!(err.error_type(), "image_too_large");
        let d = err.to_detail();
        assert_eq!(d.loc, vec!["body", "image_url"]);
        assert_eq!(
            d.ctx,
            Some(serde_json::json!({"max_height": limits.max_side, "max_width": limits.max_side}))
        );
    }
    // Within the side limit but narrower than 1:8 (and 8:1): the aspect limit.
    let max = limits.max_aspect_ratio;
    for (w, h) in [(100, 100 * max + 1), (100 * max + 1, 100)] {
        let err = decode(&png_flat_gray(w, h)).unwrap_err();
        assert_eq!(err.error_type(), "value_error", "{err}");
        assert_eq!(err.field(), "image_url");
        assert!(err.message().contains("aspect ratio"), "{err}");
        assert_eq!(
            err.ctx(),
            Some(serde_json::json!({"max_aspect_ratio": max}))
        );
    }
    // Exactly 1:8 and 8:1 decode.
    for (w, h) in [(16, 16 * max), (16 * max, 16)] {
        let img = decode(&png_flat_gray(w, h)).unwrap();
        assert_eq!((img.width, img.height), (w, h));
    }
}
