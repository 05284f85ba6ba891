//! Encoder tests: every type × quality and every write mode, checked with ffprobe.

use std::path::{Path, PathBuf};
use std::process::Command;

use longcat_media::output::{
    EncodeError, EncodedVideo, EncoderConfig, VideoEncoder, VideoOptions, VideoOutputType,
    VideoQuality, VideoWriteMode,
};

const W: u32 = 96;
const H: u32 = 64;
const FRAMES: u32 = 8;
const FPS: u32 = 25;

/// A deterministic moving test pattern with some texture, so quality settings matter.
fn frame(w: u32, h: u32, i: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    let mut seed = 0x9e37_79b9u32 ^ i.wrapping_mul(7919);
    for y in 0..h {
        for x in 0..w {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 27) as u8; // 0..31
            let in_box = (x + 4 * i) % w < w / 3 && y > h / 4 && y < 3 * h / 4;
            let (r, g, b) = if in_box {
                (230, 40 + (y * 2) as u8, 60)
            } else {
                (
                    (x * 255 / w) as u8,
                    (y * 255 / h) as u8,
                    ((x + y + 8 * i) % 256) as u8,
                )
            };
            out.push(r.saturating_add(noise));
            out.push(g.saturating_add(noise / 2));
            out.push(b.saturating_sub(noise));
        }
    }
    out
}

fn encode(options: VideoOptions, w: u32, h: u32, n: u32) -> EncodedVideo {
    let mut enc = VideoEncoder::new(&EncoderConfig::default(), &options, w, h).unwrap();
    for i in 0..n {
        enc.push_frame(&frame(w, h, i)).unwrap();
    }
    assert_eq!(enc.frames_pushed(), n);
    enc.finish().unwrap()
}

#[derive(Debug)]
struct Probe {
    format_name: String,
    codec_name: String,
    profile: Option<String>,
    pix_fmt: String,
    width: u32,
    height: u32,
    frames: u32,
    avg_frame_rate: String,
    duration: f64,
}

fn probe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe must be installed (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    let text = |x: &serde_json::Value| x.as_str().map(str::to_string);
    Probe {
        format_name: text(&v["format"]["format_name"]).unwrap(),
        codec_name: text(&s["codec_name"]).unwrap(),
        profile: text(&s["profile"]),
        pix_fmt: text(&s["pix_fmt"]).unwrap(),
        width: s["width"].as_u64().unwrap() as u32,
        height: s["height"].as_u64().unwrap() as u32,
        frames: text(&s["nb_read_frames"]).unwrap().parse().unwrap(),
        avg_frame_rate: text(&s["avg_frame_rate"]).unwrap(),
        duration: text(&v["format"]["duration"]).unwrap().parse().unwrap(),
    }
}

/// Checks codec, profile, pixel format, size, frame count and frame rate.
fn check(video: &EncodedVideo, options: VideoOptions, w: u32, h: u32, n: u32) {
    let p = probe(video.path());
    let ctx = format!("{options:?}: {p:?}");
    assert_eq!((p.width, p.height), (w, h), "{ctx}");
    assert_eq!((video.width, video.height), (w, h), "{ctx}");
    assert_eq!(p.frames, n, "{ctx}");
    assert_eq!(video.frames, n, "{ctx}");
    let expected_duration = f64::from(n) / f64::from(options.fps);
    if options.output_type == VideoOutputType::Gif && 100 % options.fps != 0 {
        // GIF delays are whole centiseconds: FFmpeg alternates them to keep the average rate.
        let tolerance = 0.01 * f64::from(n);
        assert!((p.duration - expected_duration).abs() <= tolerance, "{ctx}");
    } else {
        assert_eq!(p.avg_frame_rate, format!("{}/1", options.fps), "{ctx}");
        assert!((p.duration - expected_duration).abs() < 0.05, "{ctx}");
    }
    assert_eq!(
        video.file_size,
        std::fs::metadata(video.path()).unwrap().len()
    );
    assert_eq!(video.content_type, options.output_type.content_type());
    assert!(video
        .file_name
        .ends_with(&format!(".{}", options.output_type.extension())));
    match options.output_type {
        VideoOutputType::X264Mp4 => {
            assert_eq!(p.codec_name, "h264", "{ctx}");
            assert_eq!(p.profile.as_deref(), Some("High"), "{ctx}");
            assert_eq!(p.pix_fmt, "yuv420p", "{ctx}");
            assert!(p.format_name.contains("mp4"), "{ctx}");
            assert!(moov_before_mdat(video.path()), "not faststart: {ctx}");
        }
        VideoOutputType::Vp9Webm => {
            assert_eq!(p.codec_name, "vp9", "{ctx}");
            assert_eq!(p.profile.as_deref(), Some("Profile 0"), "{ctx}");
            assert_eq!(p.pix_fmt, "yuv420p", "{ctx}");
            assert!(p.format_name.contains("webm"), "{ctx}");
        }
        VideoOutputType::Prores4444Mov => {
            assert_eq!(p.codec_name, "prores", "{ctx}");
            assert_eq!(p.profile.as_deref(), Some("4444"), "{ctx}");
            // FFmpeg's ProRes decoder always reports 4444 as 12-bit; the `a` shows the alpha
            // plane that yuva444p10le encoding writes.
            assert_eq!(p.pix_fmt, "yuva444p12le", "{ctx}");
            assert!(p.format_name.contains("mov"), "{ctx}");
        }
        VideoOutputType::Gif => {
            assert_eq!(p.codec_name, "gif", "{ctx}");
            assert_eq!(p.pix_fmt, "bgra", "{ctx}");
            assert_eq!(p.format_name, "gif", "{ctx}");
        }
    }
}

/// Top-level MP4 boxes in order; faststart puts `moov` before `mdat`.
fn moov_before_mdat(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    let mut pos = 0usize;
    let mut order = Vec::new();
    while pos + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        order.push(String::from_utf8_lossy(&bytes[pos + 4..pos + 8]).into_owned());
        if size < 8 {
            break;
        }
        pos += size;
    }
    let moov = order.iter().position(|b| b == "moov");
    let mdat = order.iter().position(|b| b == "mdat");
    matches!((moov, mdat), (Some(a), Some(b)) if a < b)
}

#[test]
fn every_type_and_quality_encodes_and_quality_grows_the_file() {
    for output_type in VideoOutputType::ALL {
        let mut sizes = Vec::new();
        for quality in VideoQuality::ALL {
            let options = VideoOptions {
                output_type,
                quality,
                write_mode: VideoWriteMode::Balanced,
                fps: FPS,
            };
            let video = encode(options, W, H, FRAMES);
            check(&video, options, W, H, FRAMES);
            sizes.push(video.file_size);
        }
        for pair in sizes.windows(2) {
            assert!(
                pair[1] > pair[0],
                "{output_type:?}: sizes by quality low..maximum = {sizes:?}"
            );
        }
    }
}

#[test]
fn every_write_mode_encodes() {
    for output_type in VideoOutputType::ALL {
        for write_mode in VideoWriteMode::ALL {
            let options = VideoOptions {
                output_type,
                quality: VideoQuality::Medium,
                write_mode,
                fps: 30,
            };
            let video = encode(options, W, H, 6);
            check(&video, options, W, H, 6);
        }
    }
}

#[test]
fn fps_extremes_are_honoured() {
    for fps in [1, 60] {
        let options = VideoOptions {
            fps,
            ..VideoOptions::default()
        };
        let video = encode(options, W, H, 4);
        check(&video, options, W, H, 4);
    }
}

#[test]
fn x264_crops_odd_sizes_to_even() {
    let options = VideoOptions::default();
    let video = encode(options, 65, 49, 3);
    check(&video, options, 64, 48, 3);
}

#[test]
fn fps_out_of_range_is_rejected() {
    for fps in [0, 61] {
        let options = VideoOptions {
            fps,
            ..VideoOptions::default()
        };
        let err = VideoEncoder::new(&EncoderConfig::default(), &options, W, H)
            .err()
            .unwrap();
        assert!(matches!(err, EncodeError::InvalidOptions(_)), "{err}");
    }
}

#[test]
fn wrong_frame_length_is_rejected() {
    let mut enc =
        VideoEncoder::new(&EncoderConfig::default(), &VideoOptions::default(), W, H).unwrap();
    let err = enc.push_frame(&[0u8; 10]).unwrap_err();
    assert!(matches!(
        err,
        EncodeError::InvalidFrame {
            expected,
            got: 10
        } if expected == (W * H * 3) as usize
    ));
    assert!(matches!(enc.finish(), Err(EncodeError::NoFrames)));
}

#[test]
fn installed_ffmpeg_has_every_encoder() {
    let version = EncoderConfig::default().check().unwrap();
    assert!(version.starts_with("ffmpeg version"), "{version}");
}

#[test]
fn missing_ffmpeg_is_a_clear_error() {
    let config = EncoderConfig {
        ffmpeg: PathBuf::from("/nonexistent/ffmpeg"),
        ..EncoderConfig::default()
    };
    let err = VideoEncoder::new(&config, &VideoOptions::default(), W, H)
        .err()
        .unwrap();
    assert!(matches!(err, EncodeError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("FFmpeg"), "{err}");
    assert!(matches!(config.check(), Err(EncodeError::Spawn { .. })));
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("longcat-media-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn ffmpeg_failure_reports_its_stderr() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch_dir("fail");
    let fake = dir.join("fake-ffmpeg");
    std::fs::write(
        &fake,
        "#!/bin/sh\nhead -c 100 >/dev/null\necho 'Unknown encoder: boom' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = EncoderConfig {
        ffmpeg: fake,
        work_dir: dir.clone(),
    };
    let mut enc = VideoEncoder::new(&config, &VideoOptions::default(), W, H).unwrap();
    // The fake dies after 100 bytes: a push fails or finish reports the exit status.
    let mut result = Ok(());
    for i in 0..50 {
        result = enc.push_frame(&frame(W, H, i));
        if result.is_err() {
            break;
        }
    }
    let err = match result {
        Err(e) => e,
        Ok(()) => enc.finish().err().unwrap(),
    };
    match &err {
        EncodeError::Ffmpeg { message, .. } => assert!(message.contains("boom"), "{err}"),
        other => panic!("expected an ffmpeg error, got {other:?}"),
    }
    // No scratch file left behind.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("longcat-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dropping_an_unfinished_encoder_cleans_up_and_persist_keeps_the_file() {
    let dir = scratch_dir("drop");
    let config = EncoderConfig {
        work_dir: dir.clone(),
        ..EncoderConfig::default()
    };
    let count = || std::fs::read_dir(&dir).unwrap().count();
    {
        let mut enc = VideoEncoder::new(&config, &VideoOptions::default(), W, H).unwrap();
        enc.push_frame(&frame(W, H, 0)).unwrap();
        assert_eq!(count(), 1);
    }
    assert_eq!(count(), 0);

    let mut enc = VideoEncoder::new(&config, &VideoOptions::default(), W, H).unwrap();
    enc.push_frame(&frame(W, H, 0)).unwrap();
    let mut video = enc.finish().unwrap();
    let dest = dir.join("kept.mp4");
    video.persist(&dest).unwrap();
    assert_eq!(video.path(), dest.as_path());
    let file = video.to_file("https://example.test/kept.mp4");
    drop(video);
    assert!(dest.exists());
    assert_eq!(file.file_size, std::fs::metadata(&dest).unwrap().len());
    let json = serde_json::to_value(&file).unwrap();
    assert_eq!(json["content_type"], "video/mp4");
    assert_eq!(json["url"], "https://example.test/kept.mp4");
    assert_eq!(json["file_name"], "output.mp4");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wire_names_round_trip() {
    for t in VideoOutputType::ALL {
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{}\"", t.wire_name()));
        assert_eq!(serde_json::from_str::<VideoOutputType>(&json).unwrap(), t);
    }
    let q: VideoQuality = serde_json::from_str("\"maximum\"").unwrap();
    assert_eq!(q, VideoQuality::Maximum);
    let m: VideoWriteMode = serde_json::from_str("\"small\"").unwrap();
    assert_eq!(m, VideoWriteMode::Small);
    assert!(serde_json::from_str::<VideoOutputType>("\"H265 (.mp4)\"").is_err());
}
