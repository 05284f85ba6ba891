//! The detector's input, built exactly as the `nudenet` package builds it with OpenCV:
//! pad the image at the right and bottom with black to a square, resize the square to
//! 320×320 with OpenCV's fixed-point bilinear resize on 8-bit pixels (`cv2.resize`,
//! `INTER_LINEAR`), then scale to `[0, 1]` as f32 in NCHW layout with the channels in
//! **B, G, R** order (the package reads images as BGR, swaps R and B with `cvtColor`, and
//! `blobFromImage(swapRB=True)` swaps them back).

use longcat_core::RgbImage;

/// Side of the square model input (the 320n model).
pub const INPUT_SIZE: usize = 320;

/// Fixed-point bits of OpenCV's bilinear coefficients (`INTER_RESIZE_COEF_BITS`).
const COEF_BITS: u32 = 11;
/// `1 << COEF_BITS`.
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// The model input for one image and the geometry needed to map boxes back.
#[derive(Debug, Clone)]
pub struct Letterboxed {
    /// `3 * INPUT_SIZE * INPUT_SIZE` values, NCHW with channels B, G, R, in `[0, 1]`.
    pub data: Vec<f32>,
    /// The original width.
    pub width: u32,
    /// The original height.
    pub height: u32,
}

impl Letterboxed {
    /// Side of the padded square (`max(width, height)`).
    pub fn side(&self) -> u32 {
        self.width.max(self.height)
    }
}

/// Error of [`letterbox`]: the image's buffer does not hold `width * height * 3` bytes, or it
/// is empty.
#[derive(Debug, thiserror::Error)]
#[error("bad image: {0}")]
pub struct BadImage(pub String);

/// Builds the model input for `image` (see the module docs).
pub fn letterbox(image: &RgbImage) -> Result<Letterboxed, BadImage> {
    let (w, h) = (image.width as usize, image.height as usize);
    if w == 0 || h == 0 {
        return Err(BadImage(format!("empty image {w}x{h}")));
    }
    if image.data.len() != w * h * 3 {
        return Err(BadImage(format!(
            "{w}x{h} RGB image has {} bytes, expected {}",
            image.data.len(),
            w * h * 3
        )));
    }
    let side = w.max(h);
    let n = INPUT_SIZE;
    // Per output column / row: the two source indices and the two fixed-point weights.
    let cols = axis_taps(side, n, true);
    let rows = axis_taps(side, n, false);
    // Source pixel of the padded square (black outside the image), as BGR.
    let px = |x: usize, y: usize, c: usize| -> i32 {
        if x < w && y < h {
            i32::from(image.data[(y * w + x) * 3 + (2 - c)])
        } else {
            0
        }
    };
    // Horizontal pass: every padded row, resized to `n` columns (OpenCV keeps these as i32).
    let mut horiz = vec![0i32; side * n * 3];
    for y in 0..side {
        for (dx, t) in cols.iter().enumerate() {
            for c in 0..3 {
                horiz[(y * n + dx) * 3 + c] = px(t.i0, y, c) * t.w0 + px(t.i1, y, c) * t.w1;
            }
        }
    }
    // Vertical pass, with the rounding of OpenCV's SIMD kernel (`VResizeLinearVec_32s8u`):
    // each term is pre-shifted by 4, multiplied by the 16-bit weight keeping the high half,
    // and the sum rounded with `(v + 2) >> 2`.
    let plane = n * n;
    let mut data = vec![0f32; 3 * plane];
    let scale = 1.0f32 / 255.0;
    for (dy, t) in rows.iter().enumerate() {
        let r0 = &horiz[t.i0 * n * 3..(t.i0 + 1) * n * 3];
        let r1 = &horiz[t.i1 * n * 3..(t.i1 + 1) * n * 3];
        for dx in 0..n {
            for c in 0..3 {
                let k = dx * 3 + c;
                let v = (((r0[k] >> 4) * t.w0) >> 16) + (((r1[k] >> 4) * t.w1) >> 16);
                let v = ((v + 2) >> 2).clamp(0, 255);
                data[c * plane + dy * n + dx] = v as f32 * scale;
            }
        }
    }
    Ok(Letterboxed {
        data,
        width: image.width,
        height: image.height,
    })
}

/// One output position's two source taps and weights (the weights are in 1/2048).
#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: i32,
    w1: i32,
}

/// OpenCV's bilinear taps for resizing `src` samples to `dst` (`resizeGeneric` setup).
/// Columns clamp both the index and the fraction at the borders; rows only clamp the
/// source row (the fraction is kept), as OpenCV does.
fn axis_taps(src: usize, dst: usize, is_x: bool) -> Vec<Tap> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut frac = f - s as f32;
            if is_x {
                if s < 0 {
                    frac = 0.0;
                    s = 0;
                }
                if s >= src as i64 - 1 {
                    frac = 0.0;
                    s = src as i64 - 1;
                }
            }
            let clamp = |i: i64| i.clamp(0, src as i64 - 1) as usize;
            Tap {
                i0: clamp(s),
                i1: clamp(s + 1),
                w0: ((1.0 - frac) * COEF_SCALE).round_ties_even() as i32,
                w1: (frac * COEF_SCALE).round_ties_even() as i32,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> RgbImage {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&f(x, y));
            }
        }
        RgbImage {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn uniform_square_stays_uniform_and_is_bgr() {
        let img = image(500, 500, |_, _| [200, 100, 10]);
        let lb = letterbox(&img).unwrap();
        let plane = INPUT_SIZE * INPUT_SIZE;
        for (c, want) in [(0, 10.0f32), (1, 100.0), (2, 200.0)] {
            for v in &lb.data[c * plane..(c + 1) * plane] {
                assert!((v * 255.0 - want).abs() < 1e-3, "channel {c}: {v}");
            }
        }
    }

    #[test]
    fn wide_image_is_padded_black_at_the_bottom() {
        let img = image(640, 320, |_, _| [255, 255, 255]);
        let lb = letterbox(&img).unwrap();
        assert_eq!(lb.side(), 640);
        // Top half white, bottom half black (exact 2x downscale, no mixing across rows
        // except at the seam).
        assert_eq!(lb.data[10 * INPUT_SIZE + 5], 1.0);
        assert_eq!(lb.data[300 * INPUT_SIZE + 5], 0.0);
    }

    #[test]
    fn identity_size_is_unchanged() {
        let img = image(320, 320, |x, y| [(x % 256) as u8, (y % 256) as u8, 7]);
        let lb = letterbox(&img).unwrap();
        let plane = INPUT_SIZE * INPUT_SIZE;
        assert_eq!(lb.data[2 * plane + 5 * INPUT_SIZE + 77] * 255.0, 77.0);
        assert_eq!(lb.data[plane + 5 * INPUT_SIZE + 77] * 255.0, 5.0);
    }

    #[test]
    fn rejects_inconsistent_buffers() {
        let bad = RgbImage {
            width: 4,
            height: 4,
            data: vec![0; 10],
        };
        assert!(letterbox(&bad).is_err());
    }
}
