//! Encoder overhead benchmark: our streaming encoder versus the `ffmpeg` program encoding the
//! same raw frames (read from a file) with the same arguments, in one run.
//!
//! ```text
//! cargo run --release -p longcat-media --example encode_bench -- \
//!     [--type "X264 (.mp4)"|all] [--quality high] [--mode balanced] \
//!     [--frames 162] [--size 1280x720] [--fps 30] [--rounds 2]
//! ```

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use longcat_media::output::{
    ffmpeg_args, EncoderConfig, VideoEncoder, VideoOptions, VideoOutputType, VideoQuality,
    VideoWriteMode,
};

struct Args {
    types: Vec<VideoOutputType>,
    quality: VideoQuality,
    mode: VideoWriteMode,
    frames: u32,
    width: u32,
    height: u32,
    fps: u32,
    rounds: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        types: vec![VideoOutputType::X264Mp4],
        quality: VideoQuality::High,
        mode: VideoWriteMode::Balanced,
        frames: 162,
        width: 1280,
        height: 720,
        fps: 30,
        rounds: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--type" if value == "all" => a.types = VideoOutputType::ALL.to_vec(),
            "--type" => a.types = vec![value.parse().map_err(|e| format!("--type: {e}"))?],
            "--quality" => a.quality = value.parse().map_err(|e| format!("--quality: {e}"))?,
            "--mode" => a.mode = value.parse().map_err(|e| format!("--mode: {e}"))?,
            "--frames" => a.frames = value.parse().map_err(|_| "bad --frames")?,
            "--fps" => a.fps = value.parse().map_err(|_| "bad --fps")?,
            "--rounds" => a.rounds = value.parse().map_err(|_| "bad --rounds")?,
            "--size" => {
                let (w, h) = value.split_once('x').ok_or("--size is WxH")?;
                a.width = w.parse().map_err(|_| "bad width")?;
                a.height = h.parse().map_err(|_| "bad height")?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// A moving, smoothly shaded scene with mild texture (roughly video-like for the encoders).
fn make_frame(w: u32, h: u32, i: u32) -> Vec<u8> {
    let mut out = vec![0u8; (w * h * 3) as usize];
    let (cx, cy) = (
        (w / 4 + i * 5) % w,
        h / 2 + ((i as f32 * 0.1).sin() * h as f32 / 4.0) as u32,
    );
    for y in 0..h {
        for x in 0..w {
            let o = ((y * w + x) * 3) as usize;
            let dx = x as i32 - cx as i32;
            let dy = y as i32 - cy as i32;
            let disc = dx * dx + dy * dy < (h as i32 / 6).pow(2);
            let texture = ((x.wrapping_mul(31) ^ y.wrapping_mul(17)).wrapping_add(i * 3) % 9) as u8;
            let (r, g, b) = if disc {
                (240, 180, 40)
            } else {
                (
                    (x * 200 / w) as u8,
                    (y * 160 / h + 40) as u8,
                    ((x + y + i * 4) % 200) as u8,
                )
            };
            out[o] = r.saturating_add(texture);
            out[o + 1] = g.saturating_add(texture);
            out[o + 2] = b.saturating_add(texture);
        }
    }
    out
}

fn run_direct(
    options: &VideoOptions,
    a: &Args,
    raw: &Path,
    out: &Path,
) -> Result<Duration, String> {
    let args = ffmpeg_args(options, a.width, a.height, &raw.to_string_lossy(), out);
    let start = Instant::now();
    let result = Command::new("ffmpeg")
        .args(&args)
        .output()
        .map_err(|e| e.to_string())?;
    let took = start.elapsed();
    if !result.status.success() {
        return Err(String::from_utf8_lossy(&result.stderr).into_owned());
    }
    Ok(took)
}

fn run_ours(
    options: &VideoOptions,
    a: &Args,
    frames: &[Vec<u8>],
) -> Result<(Duration, u64), String> {
    let start = Instant::now();
    let mut enc = VideoEncoder::new(&EncoderConfig::default(), options, a.width, a.height)
        .map_err(|e| e.to_string())?;
    for f in frames {
        enc.push_frame(f).map_err(|e| e.to_string())?;
    }
    let video = enc.finish().map_err(|e| e.to_string())?;
    Ok((start.elapsed(), video.file_size))
}

fn main() -> Result<(), String> {
    let a = parse_args()?;
    eprintln!(
        "generating {} frames of {}x{} ...",
        a.frames, a.width, a.height
    );
    let frames: Vec<Vec<u8>> = (0..a.frames)
        .map(|i| make_frame(a.width, a.height, i))
        .collect();
    let dir = std::env::temp_dir();
    let raw = dir.join(format!("longcat-bench-{}.rgb", std::process::id()));
    {
        let mut f = std::fs::File::create(&raw).map_err(|e| e.to_string())?;
        for fr in &frames {
            f.write_all(fr).map_err(|e| e.to_string())?;
        }
    }
    println!(
        "{:<18} {:>8} {:>9} {:>10} {:>10} {:>7} {:>11} {:>11}",
        "type", "quality", "mode", "ffmpeg s", "ours s", "ratio", "ffmpeg B", "ours B"
    );
    for &output_type in &a.types {
        let options = VideoOptions {
            output_type,
            quality: a.quality,
            write_mode: a.mode,
            fps: a.fps,
        };
        let out = dir.join(format!(
            "longcat-bench-{}.{}",
            std::process::id(),
            output_type.extension()
        ));
        let (mut best_direct, mut best_ours) = (Duration::MAX, Duration::MAX);
        let mut ours_size = 0;
        for round in 0..a.rounds {
            // Alternate the order so neither side always runs on a warmer machine.
            let direct = || run_direct(&options, &a, &raw, &out);
            let (d, (o, size)) = if round % 2 == 0 {
                let d = direct()?;
                (d, run_ours(&options, &a, &frames)?)
            } else {
                let o = run_ours(&options, &a, &frames)?;
                (direct()?, o)
            };
            best_direct = best_direct.min(d);
            best_ours = best_ours.min(o);
            ours_size = size;
        }
        let direct_size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&out);
        println!(
            "{:<18} {:>8} {:>9} {:>10.2} {:>10.2} {:>7.3} {:>11} {:>11}",
            output_type.wire_name(),
            a.quality.wire_name(),
            a.mode.wire_name(),
            best_direct.as_secs_f64(),
            best_ours.as_secs_f64(),
            best_ours.as_secs_f64() / best_direct.as_secs_f64(),
            direct_size,
            ours_size
        );
    }
    let _ = std::fs::remove_file(&raw);
    Ok(())
}
