//! Aspect-ratio resolution buckets, as the official pipeline picks them.
//!
//! The condition's `h / w` ratio is compared with each bucket key; the first key with the
//! smallest distance (official dict order) wins. There is no crop: the image is resized
//! straight to the bucket size.

/// One bucket table: `(ratio key, [height, width])` in the official order.
pub type BucketTable = &'static [(f64, [u32; 2])];

/// `ASPECT_RATIO_627`: 480p buckets for spatial scale 16 or 32 (stage 1 on one GPU).
pub const ASPECT_RATIO_627: BucketTable = &[
    (0.26, [320, 1216]),
    (0.31, [352, 1120]),
    (0.38, [384, 1024]),
    (0.43, [416, 960]),
    (0.52, [448, 864]),
    (0.58, [480, 832]),
    (0.67, [512, 768]),
    (0.74, [544, 736]),
    (0.86, [576, 672]),
    (0.95, [608, 640]),
    (1.05, [640, 608]),
    (1.17, [672, 576]),
    (1.29, [704, 544]),
    (1.35, [736, 544]),
    (1.50, [768, 512]),
    (1.67, [800, 480]),
    (1.73, [832, 480]),
    (2.00, [896, 448]),
    (2.31, [960, 416]),
    (2.58, [992, 384]),
    (2.75, [1056, 384]),
    (3.09, [1088, 352]),
    (3.70, [1184, 320]),
    (3.80, [1216, 320]),
    (3.90, [1248, 320]),
    (4.00, [1280, 320]),
];

/// `ASPECT_RATIO_960`: 720p buckets for spatial scale 16 or 32.
pub const ASPECT_RATIO_960: BucketTable = &[
    (0.25, [480, 1920]),
    (0.29, [512, 1792]),
    (0.32, [544, 1696]),
    (0.36, [576, 1600]),
    (0.40, [608, 1504]),
    (0.49, [672, 1376]),
    (0.54, [704, 1312]),
    (0.59, [736, 1248]),
    (0.69, [800, 1152]),
    (0.74, [832, 1120]),
    (0.82, [864, 1056]),
    (0.88, [896, 1024]),
    (0.94, [928, 992]),
    (1.00, [960, 960]),
    (1.07, [992, 928]),
    (1.14, [1024, 896]),
    (1.22, [1056, 864]),
    (1.31, [1088, 832]),
    (1.35, [1120, 832]),
    (1.44, [1152, 800]),
    (1.70, [1248, 736]),
    (2.00, [1344, 672]),
    (2.05, [1376, 672]),
    (2.47, [1504, 608]),
    (2.53, [1536, 608]),
    (2.83, [1632, 576]),
    (3.06, [1664, 544]),
    (3.12, [1696, 544]),
    (3.62, [1856, 512]),
    (3.93, [1888, 480]),
    (4.00, [1920, 480]),
];

/// `ASPECT_RATIO_960_F64`: 720p buckets for spatial scale 64 (the refinement stage).
pub const ASPECT_RATIO_960_F64: BucketTable = &[
    (0.22, [448, 2048]),
    (0.29, [512, 1792]),
    (0.36, [576, 1600]),
    (0.45, [640, 1408]),
    (0.55, [704, 1280]),
    (0.63, [768, 1216]),
    (0.76, [832, 1088]),
    (0.88, [896, 1024]),
    (1.00, [960, 960]),
    (1.14, [1024, 896]),
    (1.31, [1088, 832]),
    (1.50, [1152, 768]),
    (1.58, [1216, 768]),
    (1.82, [1280, 704]),
    (1.91, [1344, 704]),
    (2.20, [1408, 640]),
    (2.30, [1472, 640]),
    (2.67, [1536, 576]),
    (2.89, [1664, 576]),
    (3.62, [1856, 512]),
    (3.75, [1920, 512]),
];

/// Target resolution family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// 480p (stage 1).
    P480,
    /// 720p (refinement).
    P720,
}

/// The official table for a resolution and spatial scale factor (single GPU: 16 for
/// stage 1, 64 for refinement); `None` for combinations this port does not carry.
pub fn table_for(resolution: Resolution, scale_factor_spatial: u32) -> Option<BucketTable> {
    match (resolution, scale_factor_spatial) {
        (Resolution::P480, 16 | 32) => Some(ASPECT_RATIO_627),
        (Resolution::P720, 16 | 32) => Some(ASPECT_RATIO_960),
        (Resolution::P720, 64) => Some(ASPECT_RATIO_960_F64),
        _ => None,
    }
}

/// Picks `(height, width)` for a condition of `height × width` pixels from `table`:
/// the first key closest to `height / width`.
pub fn pick(table: &[(f64, [u32; 2])], height: u32, width: u32) -> (u32, u32) {
    let ratio = height as f64 / width.max(1) as f64;
    let mut best = table[0];
    for &entry in table.iter().skip(1) {
        if (entry.0 - ratio).abs() < (best.0 - ratio).abs() {
            best = entry;
        }
    }
    (best.1[0], best.1[1])
}

/// The `height × width` proportion of a text-to-video `aspect_ratio` (16:9 → 9 × 16).
pub fn aspect_sides(aspect: crate::api::AspectRatio) -> (u32, u32) {
    use crate::api::AspectRatio;
    match aspect {
        AspectRatio::Landscape => (9, 16),
        AspectRatio::Portrait => (16, 9),
        AspectRatio::Square => (1, 1),
    }
}

/// The bucket of `table` a text-to-video `aspect_ratio` selects (the same nearest-key rule
/// as for a condition image of that shape). In the stage-1 table: 16:9 → 480×832,
/// 9:16 → 832×480, 1:1 → 608×640 (height × width).
pub fn pick_aspect(table: &[(f64, [u32; 2])], aspect: crate::api::AspectRatio) -> (u32, u32) {
    let (h, w) = aspect_sides(aspect);
    pick(table, h, w)
}

/// A bucket table shrunk by `divisor`, each side rounded to a multiple of `multiple`
/// (at least one multiple). Used by the built-in tiny model so it runs in seconds.
pub fn shrink(table: BucketTable, divisor: u32, multiple: u32) -> Vec<(f64, [u32; 2])> {
    let side = |v: u32| {
        let m = ((v as f64 / divisor as f64) / multiple as f64)
            .round()
            .max(1.0) as u32;
        m * multiple
    };
    table
        .iter()
        .map(|&(k, [h, w])| (k, [side(h), side(w)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of the goldens README (input h,w → bucket h,w).
    #[test]
    fn official_examples() {
        let cases = [
            ([480, 832], [480, 832], [704, 1280]),
            ([832, 480], [832, 480], [1280, 704]),
            ([720, 1280], [480, 832], [704, 1280]),
            ([1024, 1024], [608, 640], [960, 960]),
            ([600, 800], [544, 736], [832, 1088]),
            ([300, 1200], [320, 1216], [448, 2048]),
        ];
        let t480 = table_for(Resolution::P480, 16).unwrap();
        let t720 = table_for(Resolution::P720, 64).unwrap();
        for (input, b480, b720) in cases {
            assert_eq!(
                pick(t480, input[0], input[1]),
                (b480[0], b480[1]),
                "{input:?}"
            );
            assert_eq!(
                pick(t720, input[0], input[1]),
                (b720[0], b720[1]),
                "{input:?}"
            );
        }
    }

    /// The text-to-video buckets: 16:9 is the official demo's 480×832, its 720p
    /// refinement bucket 704×1280.
    #[test]
    fn aspect_ratio_buckets() {
        use crate::api::AspectRatio;
        let t480 = table_for(Resolution::P480, 16).unwrap();
        let t720 = table_for(Resolution::P720, 64).unwrap();
        let cases = [
            (AspectRatio::Landscape, (480, 832), (704, 1280)),
            (AspectRatio::Portrait, (832, 480), (1280, 704)),
            (AspectRatio::Square, (608, 640), (960, 960)),
        ];
        for (aspect, b480, b720) in cases {
            let s1 = pick_aspect(t480, aspect);
            assert_eq!(s1, b480, "{aspect}");
            assert_eq!(pick(t720, s1.0, s1.1), b720, "{aspect}");
        }
    }

    #[test]
    fn shrink_keeps_multiples() {
        let t = shrink(ASPECT_RATIO_960_F64, 10, 64);
        assert!(t.iter().all(|(_, [h, w])| h % 64 == 0 && w % 64 == 0));
    }
}
