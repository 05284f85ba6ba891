//! Row kernels of the online softmax: scale (+ key bias), row max, and `2^(x - m)` with the
//! row sum, written so the compiler vectorises them; on x86-64 they are compiled a second and
//! third time for AVX2+FMA and AVX-512 and picked at run time.

/// `log2(e)`: scores are kept in base 2 so the exponential is a cheap `exp2`.
pub const LOG2_E: f32 = std::f32::consts::LOG2_E;

/// Lanes of the partial sums/maxima (wide enough for AVX-512 with two accumulators).
const LANES: usize = 16;

/// `2^x` for f32 with a relative error below 2e-7, 0 below -126.
///
/// Round-to-nearest split `x = n + f`, `|f| <= 0.5`, a degree-6 polynomial for `2^f`, and the
/// exponent bits for `2^n`. Branch-free so that loops over it vectorise.
#[inline(always)]
pub fn exp2(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds to an integer and leaves that integer in the low bits.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-126.0, 126.0);
    let t = xc + MAGIC;
    let n = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let f = xc - (t - MAGIC);
    // Taylor coefficients of 2^f = e^(f ln 2).
    const C1: f32 = std::f32::consts::LN_2;
    const C2: f32 = 0.240_226_5;
    const C3: f32 = 0.055_504_11;
    const C4: f32 = 0.009_618_129;
    const C5: f32 = 0.001_333_355_8;
    const C6: f32 = 0.000_154_035_3;
    let p = 1.0 + f * (C1 + f * (C2 + f * (C3 + f * (C4 + f * (C5 + f * C6)))));
    let pow2n = f32::from_bits(((n + 127) as u32) << 23);
    let y = p * pow2n;
    if x < -126.0 {
        0.0
    } else {
        y
    }
}

/// Multiplies `row` by `c`, adds `bias * LOG2_E` when given, and returns the row maximum.
#[inline(always)]
fn scale_max_body(row: &mut [f32], c: f32, bias: Option<&[f32]>) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    match bias {
        Some(bias) => {
            let mut chunks = row.chunks_exact_mut(LANES);
            let mut bchunks = bias.chunks_exact(LANES);
            for (r, b) in (&mut chunks).zip(&mut bchunks) {
                for i in 0..LANES {
                    let v = r[i] * c + b[i] * LOG2_E;
                    r[i] = v;
                    acc[i] = acc[i].max(v);
                }
            }
            for (r, b) in chunks.into_remainder().iter_mut().zip(bchunks.remainder()) {
                *r = *r * c + *b * LOG2_E;
                acc[0] = acc[0].max(*r);
            }
        }
        None => {
            let mut chunks = row.chunks_exact_mut(LANES);
            for r in &mut chunks {
                for i in 0..LANES {
                    let v = r[i] * c;
                    r[i] = v;
                    acc[i] = acc[i].max(v);
                }
            }
            for r in chunks.into_remainder() {
                *r *= c;
                acc[0] = acc[0].max(*r);
            }
        }
    }
    acc.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Replaces every `x` of `row` by `2^(x - m)` and returns their sum.
#[inline(always)]
fn exp2_sum_body(row: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for r in &mut chunks {
        for i in 0..LANES {
            let e = exp2(r[i] - m);
            r[i] = e;
            acc[i] += e;
        }
    }
    let mut tail = 0f32;
    for r in chunks.into_remainder() {
        let e = exp2(*r - m);
        *r = e;
        tail += e;
    }
    acc.iter().sum::<f32>() + tail
}

/// `o *= a` over a slice.
#[inline(always)]
fn scale_body(o: &mut [f32], a: f32) {
    for x in o {
        *x *= a;
    }
}

/// The row kernels compiled for one instruction set.
#[derive(Clone, Copy)]
pub struct RowKernels {
    /// See [`scale_max_body`].
    pub scale_max: fn(&mut [f32], f32, Option<&[f32]>) -> f32,
    /// See [`exp2_sum_body`].
    pub exp2_sum: fn(&mut [f32], f32) -> f32,
    /// `o *= a`.
    pub scale: fn(&mut [f32], f32),
}

macro_rules! kernels_for {
    ($name:ident, $feat:literal) => {
        #[cfg(target_arch = "x86_64")]
        mod $name {
            #[target_feature(enable = $feat)]
            unsafe fn scale_max_t(row: &mut [f32], c: f32, bias: Option<&[f32]>) -> f32 {
                super::scale_max_body(row, c, bias)
            }
            #[target_feature(enable = $feat)]
            unsafe fn exp2_sum_t(row: &mut [f32], m: f32) -> f32 {
                super::exp2_sum_body(row, m)
            }
            #[target_feature(enable = $feat)]
            unsafe fn scale_t(o: &mut [f32], a: f32) {
                super::scale_body(o, a)
            }
            // Safety of the wrappers: they are only handed out by `row_kernels` after the
            // features were detected on this CPU.
            pub fn scale_max(row: &mut [f32], c: f32, bias: Option<&[f32]>) -> f32 {
                unsafe { scale_max_t(row, c, bias) }
            }
            pub fn exp2_sum(row: &mut [f32], m: f32) -> f32 {
                unsafe { exp2_sum_t(row, m) }
            }
            pub fn scale(o: &mut [f32], a: f32) {
                unsafe { scale_t(o, a) }
            }
        }
    };
}

kernels_for!(avx2, "avx2,fma");
kernels_for!(avx512, "avx512f,avx2,fma");

fn portable_scale_max(row: &mut [f32], c: f32, bias: Option<&[f32]>) -> f32 {
    scale_max_body(row, c, bias)
}
fn portable_exp2_sum(row: &mut [f32], m: f32) -> f32 {
    exp2_sum_body(row, m)
}
fn portable_scale(o: &mut [f32], a: f32) {
    scale_body(o, a)
}

/// The fastest row kernels this CPU supports.
pub fn row_kernels() -> RowKernels {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            return RowKernels {
                scale_max: avx512::scale_max,
                exp2_sum: avx512::exp2_sum,
                scale: avx512::scale,
            };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return RowKernels {
                scale_max: avx2::scale_max,
                exp2_sum: avx2::exp2_sum,
                scale: avx2::scale,
            };
        }
    }
    portable_kernels()
}

/// The kernels without any instruction-set extension (the reference for the others).
pub fn portable_kernels() -> RowKernels {
    RowKernels {
        scale_max: portable_scale_max,
        exp2_sum: portable_exp2_sum,
        scale: portable_scale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp2_is_accurate_over_the_softmax_range() {
        let mut worst = 0f64;
        let mut x = -40.0f32;
        while x <= 0.0 {
            let want = (x as f64).exp2();
            let got = exp2(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp2(0.0), 1.0);
        assert_eq!(exp2(-1e30), 0.0);
        assert_eq!(exp2(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn dispatched_kernels_match_the_portable_ones() {
        let fast = row_kernels();
        let slow = portable_kernels();
        let row: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 * 0.1 - 5.0)
            .collect();
        let bias: Vec<f32> = (0..37)
            .map(|i| if i % 5 == 0 { -1e30 } else { 0.0 })
            .collect();
        for b in [None, Some(bias.as_slice())] {
            let (mut a, mut c) = (row.clone(), row.clone());
            let ma = (fast.scale_max)(&mut a, 0.3, b);
            let mc = (slow.scale_max)(&mut c, 0.3, b);
            assert_eq!(ma, mc);
            let sa = (fast.exp2_sum)(&mut a, ma);
            let sc = (slow.exp2_sum)(&mut c, mc);
            assert!((sa - sc).abs() <= 1e-5 * sc, "{sa} vs {sc}");
            for (x, y) in a.iter().zip(&c) {
                assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
            }
        }
    }
}
