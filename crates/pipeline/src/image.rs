//! Condition-image preprocessing: Pillow-compatible Lanczos resize of 8-bit RGB images and
//! conversion to the `[-1, 1]` tensor the VAE encodes.
//!
//! The official pipeline resizes the condition straight to the bucket with PIL's LANCZOS
//! filter (no crop). Pillow resamples 8-bit images in two separable passes (horizontal, then
//! vertical) with fixed-point coefficients (22 fractional bits) and an 8-bit intermediate; this
//! module follows the same arithmetic.

use candle_core::{Device, Tensor};

use crate::api::{CancelToken, PipelineError, RgbImage};

const PRECISION_BITS: u32 = 32 - 8 - 2;
const LANCZOS_SUPPORT: f64 = 3.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = x * std::f64::consts::PI;
        px.sin() / px
    }
}

fn lanczos(x: f64) -> f64 {
    if (-LANCZOS_SUPPORT..LANCZOS_SUPPORT).contains(&x) {
        sinc(x) * sinc(x / LANCZOS_SUPPORT)
    } else {
        0.0
    }
}

/// Per output pixel: first input index and fixed-point weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = LANCZOS_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let ss = 1.0 / filterscale;
    let mut pre = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, p) in pre.iter_mut().enumerate().take(n) {
            let w = lanczos((x as f64 + xmin as f64 - center + 0.5) * ss);
            *p = w;
            ww += w;
        }
        for (x, p) in pre.iter().enumerate().take(n) {
            let w = if ww != 0.0 { p / ww } else { *p };
            let fixed = w * (1i64 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        bounds,
        ksize,
        weights,
    }
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal pass of one input row (`src_row`, `in_w` pixels) into `out` (`out_w` pixels).
fn resample_row(src_row: &[u8], c: &Coeffs, out: &mut [u8]) {
    for (x, px) in out.chunks_exact_mut(3).enumerate() {
        let (start, n) = c.bounds[x];
        let k = &c.weights[x * c.ksize..x * c.ksize + n];
        for (ch, o) in px.iter_mut().enumerate() {
            let mut acc: i64 = 1 << (PRECISION_BITS - 1);
            for (i, &wt) in k.iter().enumerate() {
                acc += src_row[(start + i) * 3 + ch] as i64 * wt as i64;
            }
            *o = clip8(acc);
        }
    }
}

/// Rows (input or output) between two cancel checks (a check costs one atomic load).
const ROWS_PER_CANCEL_CHECK: usize = 64;

/// Resizes like Pillow's `Image.resize((width, height), LANCZOS)` (same size: a copy).
pub fn resize_lanczos(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage, PipelineError> {
    resize_lanczos_cancellable(img, width, height, &CancelToken::new())
}

/// [`resize_lanczos`], checking `cancel` every few rows.
///
/// Bit-identical to Pillow's two passes (horizontal into an 8-bit intermediate, then
/// vertical), but the intermediate is never whole: output rows are made in order, and only
/// the horizontally resampled input rows the current output row reads are kept (a window of
/// at most the vertical kernel's size, `2·⌈3·in_h/out_h⌉+1` rows of `width` pixels). Memory
/// is the output plus that window and the weight tables, whatever the input's shape; each
/// input row is resampled once, so time is linear in `in_h · max(in_w, width)` plus the
/// output times the vertical kernel.
pub fn resize_lanczos_cancellable(
    img: &RgbImage,
    width: u32,
    height: u32,
    cancel: &CancelToken,
) -> Result<RgbImage, PipelineError> {
    let expected = img.width as usize * img.height as usize * 3;
    if img.data.len() != expected || width == 0 || height == 0 {
        return Err(PipelineError::InvalidRequest(format!(
            "bad image ({}x{}, {} bytes) or target {width}x{height}",
            img.width,
            img.height,
            img.data.len()
        )));
    }
    let (in_w, in_h) = (img.width as usize, img.height as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let horizontal = (width != img.width).then(|| precompute(in_w, out_w));
    let vertical = (height != img.height).then(|| precompute(in_h, out_h));
    let src_row = |y: usize| &img.data[y * in_w * 3..(y + 1) * in_w * 3];
    let mut data = vec![0u8; out_w * out_h * 3];
    let row_bytes = out_w * 3;

    let Some(v) = vertical else {
        // Horizontal pass only (or a copy), row by row.
        for (y, out) in data.chunks_exact_mut(row_bytes).enumerate() {
            if y % ROWS_PER_CANCEL_CHECK == 0 {
                cancel.check()?;
            }
            match &horizontal {
                Some(h) => resample_row(src_row(y), h, out),
                None => out.copy_from_slice(src_row(y)),
            }
        }
        return Ok(RgbImage {
            width,
            height,
            data,
        });
    };

    // Window of horizontally resampled input rows `[first, first + rows)`, as a ring.
    let cap = v.ksize.min(in_h).max(1);
    let mut window = vec![0u8; cap * row_bytes];
    let (mut first, mut rows) = (0usize, 0usize);
    let mut since_check = 0usize;
    for (y, out) in data.chunks_exact_mut(row_bytes).enumerate() {
        if y % ROWS_PER_CANCEL_CHECK == 0 {
            cancel.check()?;
        }
        let (start, n) = v.bounds[y];
        // Drop rows above this output row's support; add the missing ones below.
        if start > first {
            let drop = (start - first).min(rows);
            first = start;
            rows -= drop;
        }
        while first + rows < start + n {
            since_check += 1;
            if since_check >= ROWS_PER_CANCEL_CHECK {
                since_check = 0;
                cancel.check()?;
            }
            let iy = first + rows;
            let slot = (iy % cap) * row_bytes;
            let dst = &mut window[slot..slot + row_bytes];
            match &horizontal {
                Some(h) => resample_row(src_row(iy), h, dst),
                None => dst.copy_from_slice(src_row(iy)),
            }
            rows += 1;
        }
        let k = &v.weights[y * v.ksize..y * v.ksize + n];
        for (x, o) in out.iter_mut().enumerate() {
            let mut acc: i64 = 1 << (PRECISION_BITS - 1);
            for (i, &wt) in k.iter().enumerate() {
                let slot = ((start + i) % cap) * row_bytes;
                acc += window[slot + x] as i64 * wt as i64;
            }
            *o = clip8(acc);
        }
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

/// `[1, 3, H, W]` float tensor in `[-1, 1]` (`x / 255 * 2 - 1`, as the VAE image processor).
pub fn to_model_input(img: &RgbImage, device: &Device) -> Result<Tensor, PipelineError> {
    let (h, w) = (img.height as usize, img.width as usize);
    let v: Vec<f32> = img
        .data
        .iter()
        .map(|&b| 2.0 * (b as f32 / 255.0) - 1.0)
        .collect();
    Ok(Tensor::from_vec(v, (h, w, 3), device)?
        .permute((2, 0, 1))?
        .unsqueeze(0)?
        .contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[(x * 7 % 256) as u8, (y * 13 % 256) as u8, 128]);
            }
        }
        RgbImage {
            width: w,
            height: h,
            data,
        }
    }

    /// The previous whole-image two-pass resize (Pillow's arithmetic, full intermediate):
    /// the reference the windowed resize must match bit for bit.
    fn reference(src: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
        fn pass(src: &RgbImage, out_w: u32, out_h: u32, horizontal: bool) -> RgbImage {
            let (in_len, out_len) = if horizontal {
                (src.width as usize, out_w as usize)
            } else {
                (src.height as usize, out_h as usize)
            };
            let c = precompute(in_len, out_len);
            let (w, h) = (out_w as usize, out_h as usize);
            let sw = src.width as usize;
            let mut data = vec![0u8; w * h * 3];
            for y in 0..h {
                for x in 0..w {
                    let o = if horizontal { x } else { y };
                    let (start, n) = c.bounds[o];
                    let k = &c.weights[o * c.ksize..o * c.ksize + n];
                    for ch in 0..3 {
                        let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                        for (i, &wt) in k.iter().enumerate() {
                            let idx = if horizontal {
                                (y * sw + start + i) * 3 + ch
                            } else {
                                ((start + i) * sw + x) * 3 + ch
                            };
                            acc += src.data[idx] as i64 * wt as i64;
                        }
                        data[(y * w + x) * 3 + ch] = clip8(acc);
                    }
                }
            }
            RgbImage {
                width: out_w,
                height: out_h,
                data,
            }
        }
        let mut cur = src.clone();
        if out_w != cur.width {
            cur = pass(&cur, out_w, cur.height, true);
        }
        if out_h != cur.height {
            cur = pass(&cur, out_w, out_h, false);
        }
        cur
    }

    fn noise(w: u32, h: u32, seed: u32) -> RgbImage {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let data = (0..w * h * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            })
            .collect();
        RgbImage {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn windowed_resize_matches_the_two_pass_reference() {
        let cases = [
            ((40, 30), (13, 51)),
            ((64, 48), (64, 20)),
            ((64, 48), (20, 48)),
            ((7, 300), (24, 96)),
            ((300, 7), (96, 24)),
            ((33, 17), (77, 61)),
            ((1, 90), (5, 9)),
            ((90, 1), (9, 5)),
            ((256, 2048), (32, 128)),
        ];
        for (k, ((iw, ih), (ow, oh))) in cases.into_iter().enumerate() {
            let img = noise(iw, ih, k as u32);
            let got = resize_lanczos(&img, ow, oh).unwrap();
            let want = reference(&img, ow, oh);
            assert_eq!((got.width, got.height), (ow, oh));
            assert!(got.data == want.data, "{iw}x{ih} -> {ow}x{oh} differs");
        }
    }

    #[test]
    fn cancelled_resize_stops() {
        let img = noise(64, 4096, 1);
        let cancel = CancelToken::new();
        cancel.cancel();
        for (w, h) in [(16, 64), (64, 64), (16, 4096)] {
            let err = resize_lanczos_cancellable(&img, w, h, &cancel).unwrap_err();
            assert!(matches!(err, PipelineError::Cancelled), "{w}x{h}: {err}");
        }
    }

    #[test]
    fn same_size_is_identity() {
        let img = gradient(16, 8);
        let out = resize_lanczos(&img, 16, 8).unwrap();
        assert_eq!(out.data, img.data);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage {
            width: 40,
            height: 30,
            data: vec![77; 40 * 30 * 3],
        };
        let out = resize_lanczos(&img, 13, 51).unwrap();
        assert_eq!((out.width, out.height), (13, 51));
        assert!(out.data.iter().all(|&v| v == 77));
    }

    #[test]
    fn model_input_range() {
        let img = RgbImage {
            width: 2,
            height: 1,
            data: vec![0, 255, 0, 255, 0, 255],
        };
        let t = to_model_input(&img, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 1, 2]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v, vec![-1.0, 1.0, 1.0, -1.0, -1.0, 1.0]);
    }
}
