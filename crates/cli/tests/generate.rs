//! `longcat generate` end to end with the built-in tiny model: the file is checked with
//! ffprobe, the same seed gives the same bytes, another seed another video, and bad fields
//! are reported.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn write_png(path: &Path) {
    let img = image::RgbImage::from_fn(96, 54, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 4) as u8, ((x * y) % 251) as u8])
    });
    img.save(path).unwrap();
}

fn generate(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_longcat"));
    safety_env(&mut cmd);
    cmd.arg("generate")
        .args(args)
        .env_remove("LONGCAT_WEIGHTS")
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The safety checker (on by default) runs with the workspace's model where it is fetched;
/// without it these tests, which are not about the checker, turn it off
/// (`tests/generate_safety.rs` covers the checker and skips or fails by the safety tests'
/// rule).
fn safety_env(cmd: &mut Command) {
    let model = longcat_safety::test_assets::model_path();
    if model.is_file() {
        cmd.env("LONGCAT_SAFETY_MODEL", model);
    } else {
        cmd.env("LONGCAT_SAFETY_CHECKER", "off");
    }
}

fn run_ok(dir: &Path, image: &Path, seed: &str, out: &str) -> (PathBuf, serde_json::Value) {
    let output = generate(
        dir,
        &[
            "--image",
            image.to_str().unwrap(),
            "--prompt",
            "a red kite over the sea",
            "--num-frames",
            "17",
            "--num-inference-steps",
            "8",
            "--num-refine-inference-steps",
            "8",
            "--seed",
            seed,
            "-o",
            out,
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "generate failed:\n{stderr}");
    assert!(stderr.contains("tiny random model"), "{stderr}");
    assert!(stderr.contains("step"), "progress on stderr: {stderr}");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    (dir.join(out), result)
}

fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames,r_frame_rate,pix_fmt",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["streams"][0].clone()
}

#[test]
fn generate_writes_a_valid_deterministic_video() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("in.png");
    write_png(&image);

    let (a, result) = run_ok(dir.path(), &image, "5", "a.mp4");
    assert_eq!(result["seed"], 5);
    assert_eq!(result["video"]["content_type"], "video/mp4");
    let size = std::fs::metadata(&a).unwrap().len();
    assert_eq!(result["video"]["file_size"], size);
    let stream = ffprobe(&a);
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(stream["pix_fmt"], "yuv420p");
    assert_eq!(stream["r_frame_rate"], "30/1");
    assert_eq!(
        stream["nb_read_frames"], "34",
        "17 frames at 15 fps → 34 at 30 fps"
    );
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(80), Some(48))
    );

    let (b, _) = run_ok(dir.path(), &image, "5", "b.mp4");
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "same seed, same bytes"
    );
    let (c, _) = run_ok(dir.path(), &image, "6", "c.mp4");
    assert_ne!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&c).unwrap(),
        "another seed"
    );
}

#[test]
fn input_json_and_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("req.json");
    std::fs::write(
        &body,
        r#"{"image_url": "https://example.com/x.png", "num_frames": 5, "video_quality": "ultra"}"#,
    )
    .unwrap();
    let out = generate(dir.path(), &["--input-json", body.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("num_frames") && stderr.contains("video_quality"),
        "{stderr}"
    );
    let missing = generate(dir.path(), &["--image", "/nonexistent/x.png"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/x.png"));
}

#[test]
fn ctrl_c_stops_a_running_generation() {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("in.png");
    write_png(&image);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_longcat"));
    safety_env(&mut cmd);
    let mut child = cmd
        .args([
            "generate",
            "--image",
            image.to_str().unwrap(),
            "--num-frames",
            "961",
        ])
        .args([
            "--num-inference-steps",
            "8",
            "--num-refine-inference-steps",
            "8",
        ])
        .args(["-o", "long.mp4"])
        .env_remove("LONGCAT_WEIGHTS")
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr on a thread; interrupt once denoising progress shows up.
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !text.contains("step") && Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            text.push_str(&chunk);
        }
    }
    assert!(
        text.contains("step"),
        "no progress before the deadline: {text}"
    );
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(60),
            "generation did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(500)) {
        text.push_str(&chunk);
    }
    assert!(!status.success(), "a cancelled run must fail");
    assert!(text.contains("interrupted"), "{text}");
    assert!(text.contains("cancelled"), "{text}");
    assert!(
        !dir.path().join("long.mp4").exists(),
        "no output file on cancel"
    );
}

/// An OpenAI-compatible chat endpoint on loopback, on its own thread, answering `content`;
/// returns its base URL and the request bodies it received.
fn chat_endpoint(
    content: &'static str,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let record = seen.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/chat/completions",
                axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                    record.lock().unwrap().push(body);
                    async move {
                        axum::Json(serde_json::json!({
                            "choices": [{"message": {"role": "assistant", "content": content}}]
                        }))
                    }
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (base, seen)
}

#[test]
fn prompt_expansion_rewrites_the_prompt_or_warns() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("in.png");
    write_png(&image);
    let (base, seen) = chat_endpoint("A kite climbs into a windy sky.");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "--image",
            image.to_str().unwrap(),
            "--prompt",
            "a kite",
            "--num-frames",
            "17",
            "--num-inference-steps",
            "8",
            "--num-refine-inference-steps",
            "8",
            "--seed",
            "1",
            "--enable-prompt-expansion",
            "-o",
            "e.mp4",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = generate(dir.path(), &a);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "generate failed:\n{stderr}");
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (result, stderr)
    };

    let (result, stderr) = run(args(&[
        "--prompt-expansion-url",
        &base,
        "--prompt-expansion-model",
        "vl",
    ]));
    assert_eq!(
        result["prompt"], "A kite climbs into a windy sky.",
        "{stderr}"
    );
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["model"], "vl");
    assert_eq!(bodies[0]["messages"][1]["content"][0]["text"], "a kite");

    let (result, stderr) = run(args(&[]));
    assert_eq!(result["prompt"], "a kite");
    assert!(stderr.contains("no endpoint is configured"), "{stderr}");
}

/// `--app`: text-to-video 480p makes stage 1's frames at 15 fps in the `--aspect-ratio`
/// bucket (9:16 → 32×48 with the tiny model), without an image; distilled image-to-video
/// 720p refines to 30 fps with its own step range.
#[test]
fn apps_follow_their_stage_plan() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("in.png");
    write_png(&image);
    let common = ["--num-frames", "17", "--seed", "3"];
    let t2v: &[&str] = &[
        "--app",
        "fal-ai/longcat-video/text-to-video/480p",
        "--aspect-ratio",
        "9:16",
        "--prompt",
        "a kite over the sea",
        "--num-inference-steps",
        "8",
    ];
    let distilled: &[&str] = &[
        "--app",
        "distilled/image-to-video/720p",
        "--image",
        image.to_str().unwrap(),
        "--num-inference-steps",
        "4",
        "--num-refine-inference-steps",
        "8",
    ];
    // (flags, frames, width, height, frame rate)
    let cases = [
        (t2v, "17", 32, 48, "15/1"),
        (distilled, "34", 80, 48, "30/1"),
    ];
    for (i, (args, frames, w, h, fps)) in cases.into_iter().enumerate() {
        let out_name = format!("app{i}.mp4");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(common);
        all.extend(["-o", &out_name]);
        let out = generate(dir.path(), &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}:\n{stderr}");
        let stream = ffprobe(&dir.path().join(&out_name));
        assert_eq!(stream["nb_read_frames"], frames, "{args:?}");
        assert_eq!(stream["r_frame_rate"], fps, "{args:?}");
        assert_eq!(
            (stream["width"].as_u64(), stream["height"].as_u64()),
            (Some(w), Some(h)),
            "{args:?}"
        );
    }
}

/// What an app does not take is refused, naming the field, before any model is loaded.
#[test]
fn app_fields_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("in.png");
    write_png(&image);
    let img = image.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--app", "text-to-video/720p", "--image", img],
            "image_url",
        ),
        (&["--app", "image-to-video/480p"], "image_url"),
        (
            &[
                "--app",
                "image-to-video/720p",
                "--image",
                img,
                "--aspect-ratio",
                "1:1",
            ],
            "aspect_ratio",
        ),
        (
            &[
                "--app",
                "distilled/text-to-video/480p",
                "--guidance-scale",
                "3",
            ],
            "guidance_scale",
        ),
        (
            &[
                "--app",
                "distilled/text-to-video/480p",
                "--num-inference-steps",
                "20",
            ],
            "num_inference_steps",
        ),
    ];
    for (args, field) in cases {
        let out = generate(dir.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(field), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("model:"),
            "refused before loading: {stderr}"
        );
    }
    let out = generate(dir.path(), &["--app", "fal-ai/longcat-video/text-to-video"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown app"));
}
