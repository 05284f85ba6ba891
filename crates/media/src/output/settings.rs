//! Per-codec encoder settings and the FFmpeg command line that applies them.
//!
//! The table is documented in `docs/media.md`; keep the two in step.

use std::ffi::OsString;
use std::path::Path;

use super::options::{VideoOptions, VideoOutputType, VideoQuality, VideoWriteMode};

/// Concrete encoder parameters chosen for one [`VideoOptions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecSettings {
    /// libx264: constant rate factor and speed preset.
    X264 {
        /// CRF (lower = better).
        crf: u32,
        /// x264 preset name.
        preset: &'static str,
    },
    /// libvpx-vp9 in constant-quality mode (`-b:v 0`).
    Vp9 {
        /// CRF (lower = better).
        crf: u32,
        /// `good` or `realtime`.
        deadline: &'static str,
        /// `-cpu-used` (higher = faster).
        cpu_used: u32,
    },
    /// prores_ks, profile 4444, fixed quantiser.
    Prores {
        /// `-q:v` quantiser (lower = better).
        qscale: u32,
        /// Macroblocks per slice (smaller = more slices, more parallel).
        mbs_per_slice: u32,
        /// Bits for the (opaque) alpha plane.
        alpha_bits: u32,
    },
    /// GIF: palette from the first frame, Bayer (ordered) dithering.
    Gif {
        /// Palette size.
        max_colors: u32,
        /// Bayer pattern scale (higher = less visible pattern).
        bayer_scale: u32,
        /// Only re-dither the changed rectangle of each frame.
        diff_rectangle: bool,
        /// Let the GIF encoder crop unchanged borders and mark unchanged pixels transparent.
        inter_frame_optimise: bool,
    },
}

impl CodecSettings {
    /// The settings for one choice of type, quality and write mode.
    pub fn for_options(options: &VideoOptions) -> Self {
        let q = options.quality;
        let m = options.write_mode;
        match options.output_type {
            VideoOutputType::X264Mp4 => CodecSettings::X264 {
                crf: pick(q, [28, 23, 18, 12]),
                preset: match m {
                    VideoWriteMode::Fast => "veryfast",
                    VideoWriteMode::Balanced => "medium",
                    VideoWriteMode::Small => "slow",
                },
            },
            VideoOutputType::Vp9Webm => {
                let (deadline, cpu_used) = match m {
                    VideoWriteMode::Fast => ("realtime", 8),
                    VideoWriteMode::Balanced => ("good", 4),
                    VideoWriteMode::Small => ("good", 1),
                };
                CodecSettings::Vp9 {
                    crf: pick(q, [40, 34, 28, 20]),
                    deadline,
                    cpu_used,
                }
            }
            VideoOutputType::Prores4444Mov => {
                let (mbs_per_slice, alpha_bits) = match m {
                    VideoWriteMode::Fast => (4, 16),
                    VideoWriteMode::Balanced => (8, 16),
                    VideoWriteMode::Small => (8, 8),
                };
                CodecSettings::Prores {
                    qscale: pick(q, [16, 8, 4, 1]),
                    mbs_per_slice,
                    alpha_bits,
                }
            }
            VideoOutputType::Gif => CodecSettings::Gif {
                max_colors: pick(q, [32, 64, 128, 256]),
                bayer_scale: if m == VideoWriteMode::Small { 3 } else { 2 },
                diff_rectangle: m == VideoWriteMode::Small,
                inter_frame_optimise: m != VideoWriteMode::Fast,
            },
        }
    }
}

fn pick(quality: VideoQuality, values: [u32; 4]) -> u32 {
    match quality {
        VideoQuality::Low => values[0],
        VideoQuality::Medium => values[1],
        VideoQuality::High => values[2],
        VideoQuality::Maximum => values[3],
    }
}

/// Output width and height after codec constraints (x264 4:2:0 needs even sizes: the last
/// odd row/column is cropped).
pub fn output_dimensions(output_type: VideoOutputType, width: u32, height: u32) -> (u32, u32) {
    match output_type {
        VideoOutputType::X264Mp4 => (width & !1, height & !1),
        _ => (width, height),
    }
}

/// The full FFmpeg argument list (without the program name) that reads raw RGB24 frames of
/// `width`×`height` from `input` (`pipe:0` for a pipe, or a file) and writes `output`.
pub fn ffmpeg_args(
    options: &VideoOptions,
    width: u32,
    height: u32,
    input: &str,
    output: &Path,
) -> Vec<OsString> {
    let mut args: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("{width}x{height}"));
    args.push("-framerate".into());
    args.push(options.fps.to_string());
    args.push("-i".into());
    args.push(input.into());
    args.extend(codec_args(options, width, height));
    args.push("-y".into());
    let mut out: Vec<OsString> = args.into_iter().map(OsString::from).collect();
    out.push(output.as_os_str().to_owned());
    out
}

/// BT.709 tagging shared by the YUV outputs (the model's frames are HD video).
const BT709_TAGS: [&str; 8] = [
    "-color_primaries",
    "bt709",
    "-color_trc",
    "bt709",
    "-colorspace",
    "bt709",
    "-color_range",
    "tv",
];

fn yuv_filter(crop_even: bool, pix_fmt: &str) -> String {
    let crop = if crop_even {
        "crop=trunc(iw/2)*2:trunc(ih/2)*2,"
    } else {
        ""
    };
    format!("{crop}scale=out_color_matrix=bt709:out_range=tv,format={pix_fmt}")
}

fn codec_args(options: &VideoOptions, width: u32, height: u32) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    match CodecSettings::for_options(options) {
        CodecSettings::X264 { crf, preset } => {
            let odd = width % 2 == 1 || height % 2 == 1;
            push(&["-vf", &yuv_filter(odd, "yuv420p")]);
            push(&["-c:v", "libx264", "-preset", preset]);
            push(&["-crf", &crf.to_string(), "-pix_fmt", "yuv420p"]);
            push(&BT709_TAGS);
            push(&["-movflags", "+faststart", "-f", "mp4"]);
        }
        CodecSettings::Vp9 {
            crf,
            deadline,
            cpu_used,
        } => {
            push(&["-vf", &yuv_filter(false, "yuv420p")]);
            push(&["-c:v", "libvpx-vp9", "-crf", &crf.to_string(), "-b:v", "0"]);
            push(&["-deadline", deadline, "-cpu-used", &cpu_used.to_string()]);
            push(&["-row-mt", "1", "-pix_fmt", "yuv420p"]);
            push(&BT709_TAGS);
            push(&["-f", "webm"]);
        }
        CodecSettings::Prores {
            qscale,
            mbs_per_slice,
            alpha_bits,
        } => {
            push(&["-vf", &yuv_filter(false, "yuva444p10le")]);
            push(&["-c:v", "prores_ks", "-profile:v", "4444", "-vendor", "apl0"]);
            push(&["-q:v", &qscale.to_string()]);
            push(&["-mbs_per_slice", &mbs_per_slice.to_string()]);
            push(&["-alpha_bits", &alpha_bits.to_string()]);
            push(&["-pix_fmt", "yuva444p10le"]);
            push(&BT709_TAGS);
            push(&["-f", "mov"]);
        }
        CodecSettings::Gif {
            max_colors,
            bayer_scale,
            diff_rectangle,
            inter_frame_optimise,
        } => {
            let diff = if diff_rectangle {
                ":diff_mode=rectangle"
            } else {
                ""
            };
            let graph = format!(
                "split[a][b];[a]trim=end_frame=1,palettegen=max_colors={max_colors}:stats_mode=full[p];\
                 [b][p]paletteuse=dither=bayer:bayer_scale={bayer_scale}{diff}"
            );
            push(&["-filter_complex", &graph, "-c:v", "gif"]);
            let flags = if inter_frame_optimise {
                "+offsetting+transdiff"
            } else {
                "-offsetting-transdiff"
            };
            push(&["-gifflags", flags, "-loop", "0", "-f", "gif"]);
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_lowers_crf_monotonically() {
        for output_type in VideoOutputType::ALL {
            let mut last: Option<u32> = None;
            for quality in VideoQuality::ALL {
                let opts = VideoOptions {
                    output_type,
                    quality,
                    ..VideoOptions::default()
                };
                let key = match CodecSettings::for_options(&opts) {
                    CodecSettings::X264 { crf, .. } | CodecSettings::Vp9 { crf, .. } => 100 - crf,
                    CodecSettings::Prores { qscale, .. } => 100 - qscale,
                    CodecSettings::Gif { max_colors, .. } => max_colors,
                };
                if let Some(prev) = last {
                    assert!(
                        key > prev,
                        "{output_type:?} {quality:?} not better than before"
                    );
                }
                last = Some(key);
            }
        }
    }

    #[test]
    fn x264_crops_odd_sizes_only() {
        let opts = VideoOptions::default();
        let joined = |w, h| {
            ffmpeg_args(&opts, w, h, "pipe:0", Path::new("o.mp4"))
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(joined(65, 48).contains("crop="));
        assert!(!joined(64, 48).contains("crop="));
        assert_eq!(
            output_dimensions(VideoOutputType::X264Mp4, 65, 49),
            (64, 48)
        );
        assert_eq!(output_dimensions(VideoOutputType::Gif, 65, 49), (65, 49));
    }
}
