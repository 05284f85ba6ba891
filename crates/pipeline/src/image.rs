//! Condition-image preprocessing: Pillow-compatible Lanczos resize of 8-bit RGB images and
//! conversion to the `[-1, 1]` tensor the VAE encodes.
//!
//! The official pipeline resizes the condition straight to the bucket with PIL's LANCZOS
//! filter (no crop). Pillow resamples 8-bit images in two separable passes (horizontal, then
//! vertical) with fixed-point coefficients (22 fractional bits) and an 8-bit intermediate; this
//! module follows the same arithmetic.

use candle_core::{Device, Tensor};

use crate::api::{PipelineError, RgbImage};

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

/// One separable pass over `lines` lines of `len` pixels with `stride` between pixels.
fn resample_axis(src: &RgbImage, out_w: u32, out_h: u32, horizontal: bool) -> RgbImage {
    let (in_len, out_len) = if horizontal {
        (src.width as usize, out_w as usize)
    } else {
        (src.height as usize, out_h as usize)
    };
    let c = precompute(in_len, out_len);
    let (w, h) = (out_w as usize, out_h as usize);
    let mut data = vec![0u8; w * h * 3];
    let sw = src.width as usize;
    for y in 0..h {
        for x in 0..w {
            let (o, (start, n)) = if horizontal {
                (x, c.bounds[x])
            } else {
                (y, c.bounds[y])
            };
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

/// Resizes like Pillow's `Image.resize((width, height), LANCZOS)` (same size: a copy).
pub fn resize_lanczos(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage, PipelineError> {
    if img.data.len() != (img.width * img.height * 3) as usize || width == 0 || height == 0 {
        return Err(PipelineError::InvalidRequest(format!(
            "bad image ({}x{}, {} bytes) or target {width}x{height}",
            img.width,
            img.height,
            img.data.len()
        )));
    }
    let mut cur = img.clone();
    if width != cur.width {
        cur = resample_axis(&cur, width, cur.height, true);
    }
    if height != cur.height {
        cur = resample_axis(&cur, width, height, false);
    }
    Ok(cur)
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
