//! The built-in tiny model through `load_generator`: a whole request end to end, bitwise
//! determinism per seed, progress, cancellation.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use longcat_pipeline::generator::{load_generator, GeneratorOptions};
use longcat_pipeline::{
    Acceleration, App, AspectRatio, CancelToken, GenerationError, GenerationRequest,
    GenerationSink, Progress, RgbImage, Stage, VideoFrame,
};

/// Hashes every frame instead of keeping it.
#[derive(Default)]
struct HashSink {
    hasher: DefaultHasher,
    frames: u32,
    size: Option<(u32, u32)>,
    stages: Vec<Stage>,
    etas: usize,
    logs: Vec<String>,
    next_index: u32,
    distinct_values: std::collections::BTreeSet<u8>,
}

impl GenerationSink for HashSink {
    fn progress(&mut self, p: &Progress) {
        if self.stages.last() != Some(&p.stage) {
            self.stages.push(p.stage);
        }
        self.etas += usize::from(p.eta.is_some());
    }
    fn log(&mut self, message: &str) {
        self.logs.push(message.to_string());
    }
    fn frame(&mut self, f: VideoFrame) -> Result<(), GenerationError> {
        assert_eq!(f.index, self.next_index, "frames arrive in order");
        self.next_index += 1;
        assert_eq!(f.data.len(), (f.width * f.height * 3) as usize);
        self.size = Some((f.width, f.height));
        self.distinct_values
            .extend(f.data.iter().step_by(97).copied());
        f.data.hash(&mut self.hasher);
        self.frames += 1;
        Ok(())
    }
}

/// A 16:9 gradient image.
fn image() -> RgbImage {
    let (w, h) = (128u32, 72u32);
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            data.extend([(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8]);
        }
    }
    RgbImage {
        width: w,
        height: h,
        data,
    }
}

fn request(seed: u64, num_frames: u32) -> GenerationRequest {
    GenerationRequest {
        app: App::DEFAULT,
        image: Some(image()),
        aspect_ratio: AspectRatio::default(),
        prompt: "A red car drives along a coast road at sunset.".into(),
        negative_prompt: "blurry, static".into(),
        num_frames,
        num_inference_steps: 8,
        num_refine_inference_steps: 8,
        guidance_scale: 4.0,
        seed,
        acceleration: Acceleration::Regular,
    }
}

fn run(seed: u64, num_frames: u32) -> HashSink {
    let generator = load_generator(&GeneratorOptions::default()).unwrap();
    let mut sink = HashSink::default();
    let summary = generator
        .generate(&request(seed, num_frames), &mut sink, &CancelToken::new())
        .unwrap();
    assert_eq!(summary.frames, sink.frames);
    assert_eq!(summary.seed, seed);
    sink
}

#[test]
fn tiny_model_runs_17_frames_deterministically() {
    let generator = load_generator(&GeneratorOptions::default()).unwrap();
    let info = generator.info();
    assert!(info.smoke_test_model);
    assert!(info.name.contains("tiny random model"), "{}", info.name);
    assert_eq!(info.native_fps, 30);

    let start = std::time::Instant::now();
    let a = run(7, 17);
    eprintln!("17 frames: {:.2} s", start.elapsed().as_secs_f64());
    assert_eq!(a.frames, 34, "17 stage-1 frames at 15 fps → 34 at 30 fps");
    assert_eq!(
        a.size,
        Some((80, 48)),
        "scaled-down 720p bucket of a 16:9 image"
    );
    assert!(a.distinct_values.len() > 8, "frames are not flat");
    assert!(a.stages.contains(&Stage::Base) && a.stages.contains(&Stage::Refine));
    assert!(a.etas > 0);
    assert!(a.logs.iter().any(|l| l.contains("noise")), "{:?}", a.logs);

    let b = run(7, 17);
    assert_eq!(a.hasher.finish(), b.hasher.finish(), "same seed, same bits");
    let c = run(8, 17);
    assert_ne!(
        a.hasher.finish(),
        c.hasher.finish(),
        "another seed, another video"
    );
}

#[test]
fn long_requests_continue_segments() {
    // 101 stage-1 frames: a 93-frame segment, then a continuation adding 8.
    let s = run(3, 101);
    assert_eq!(s.frames, 202);
}

#[test]
fn cancelled_before_start() {
    let generator = load_generator(&GeneratorOptions::default()).unwrap();
    let cancel = CancelToken::new();
    cancel.cancel();
    let err = generator
        .generate(&request(1, 17), &mut HashSink::default(), &cancel)
        .unwrap_err();
    assert!(matches!(err, GenerationError::Cancelled), "{err}");
}

#[test]
fn missing_weights_dir_is_named() {
    let err = load_generator(&GeneratorOptions {
        weights_dir: Some("/nonexistent/longcat".into()),
        ..GeneratorOptions::default()
    })
    .err()
    .expect("a missing directory must fail");
    let text = err.to_string();
    assert!(text.contains("/nonexistent/longcat"), "{text}");
}

/// Cancels its token at a chosen moment and counts what arrives after.
struct CancelAt {
    cancel: CancelToken,
    /// Cancel on the first progress report of this stage.
    at_stage: Option<Stage>,
    /// Cancel on the first frame.
    at_frame: bool,
    frames: u32,
    stages_after: Vec<Stage>,
}

impl GenerationSink for CancelAt {
    fn progress(&mut self, p: &Progress) {
        if self.cancel.is_cancelled() {
            self.stages_after.push(p.stage);
        } else if self.at_stage == Some(p.stage) {
            self.cancel.cancel();
        }
    }
    fn log(&mut self, _: &str) {}
    fn frame(&mut self, _: VideoFrame) -> Result<(), GenerationError> {
        self.frames += 1;
        if self.at_frame {
            self.cancel.cancel();
        }
        Ok(())
    }
}

fn cancel_at(at_stage: Option<Stage>, at_frame: bool) -> CancelAt {
    CancelAt {
        cancel: CancelToken::new(),
        at_stage,
        at_frame,
        frames: 0,
        stages_after: Vec::new(),
    }
}

/// A cancel while the last segment's frames are decoded and handed to the encoder stops the
/// decoder within one chunk: the generation ends `Cancelled`, not with every frame delivered.
#[test]
fn cancel_during_decode_stops_the_frame_stream() {
    let generator = load_generator(&GeneratorOptions::default()).unwrap();
    let mut full = HashSink::default();
    generator
        .generate(&request(3, 17), &mut full, &CancelToken::new())
        .unwrap();
    let mut sink = cancel_at(None, true);
    let cancel = sink.cancel.clone();
    let err = generator
        .generate(&request(3, 17), &mut sink, &cancel)
        .unwrap_err();
    assert!(matches!(err, GenerationError::Cancelled), "{err}");
    assert!(
        sink.frames < full.frames,
        "{} of {} frames delivered after the cancel",
        sink.frames,
        full.frames
    );
}

/// A cancel during text or image preprocessing ends the job before any denoising step.
#[test]
fn cancel_during_preprocessing_stops_before_denoising() {
    let generator = load_generator(&GeneratorOptions::default()).unwrap();
    for stage in [Stage::EncodeText, Stage::EncodeImage] {
        let mut sink = cancel_at(Some(stage), false);
        let cancel = sink.cancel.clone();
        let mut req = request(3, 17);
        // An extreme but allowed condition (1:8) makes the resize the long part.
        req.image = Some(RgbImage {
            width: 256,
            height: 2048,
            data: vec![90; 256 * 2048 * 3],
        });
        let err = generator.generate(&req, &mut sink, &cancel).unwrap_err();
        assert!(
            matches!(err, GenerationError::Cancelled),
            "{stage:?}: {err}"
        );
        assert!(
            sink.stages_after.is_empty(),
            "{stage:?}: {:?}",
            sink.stages_after
        );
        assert_eq!(sink.frames, 0);
    }
}

/// One tiny-model run per task kind through `load_generator`: frame count and size follow
/// the app (480p: stage 1's `4⌊n/4⌋+1` frames at the stage-1 bucket; 720p: doubled at the
/// refinement bucket; text-to-video: the bucket of `aspect_ratio`).
#[test]
fn every_task_kind_runs_on_the_tiny_model() {
    let generator = load_generator(&GeneratorOptions::default()).unwrap();
    let cases = [
        // (app, aspect ratio, frames, (width, height), refines)
        (
            "fal-ai/longcat-video/text-to-video/480p",
            AspectRatio::Landscape,
            17,
            (48, 32),
            false,
        ),
        (
            "fal-ai/longcat-video/text-to-video/720p",
            AspectRatio::Portrait,
            34,
            (48, 80),
            true,
        ),
        (
            "fal-ai/longcat-video/image-to-video/480p",
            AspectRatio::Landscape,
            17,
            (48, 32),
            false,
        ),
    ];
    for (id, aspect, frames, size, refines) in cases {
        let app = App::from_id(id).unwrap();
        let mut req = request(5, 18);
        req.app = app;
        req.aspect_ratio = aspect;
        if !app.takes_image() {
            req.image = None;
        }
        let mut sink = HashSink::default();
        let summary = generator
            .generate(&req, &mut sink, &CancelToken::new())
            .unwrap();
        assert_eq!(sink.frames, frames, "{id}");
        assert_eq!(summary.frames, frames, "{id}");
        assert_eq!(sink.size, Some(size), "{id}");
        assert_eq!((summary.width, summary.height), size, "{id}");
        assert!(sink.distinct_values.len() > 8, "{id}: frames are not flat");
        assert_eq!(sink.stages.contains(&Stage::Refine), refines, "{id}");
        assert_eq!(
            sink.stages.contains(&Stage::EncodeImage),
            app.takes_image(),
            "{id}"
        );
    }
}
