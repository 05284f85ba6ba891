//! A run that panics costs that run only: the engine is rebuilt and the next run completes
//! (bit for bit the same video as on a fresh engine); an engine that cannot be rebuilt says
//! so instead of failing every later job with a poisoned lock.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device};
use longcat_pipeline::engine::PanicHook;
use longcat_pipeline::generator::generator_from;
use longcat_pipeline::text_encoder::TextEncoderPolicy;
use longcat_pipeline::{
    tiny, Acceleration, App, AspectRatio, CancelToken, GenerationError, GenerationRequest,
    GenerationSink, PipelineError, Progress, RgbImage, VideoFrame, VideoGenerator,
};

#[derive(Default)]
struct HashSink {
    hasher: DefaultHasher,
    frames: u32,
}

impl GenerationSink for HashSink {
    fn progress(&mut self, _: &Progress) {}
    fn log(&mut self, _: &str) {}
    fn frame(&mut self, f: VideoFrame) -> Result<(), GenerationError> {
        f.data.hash(&mut self.hasher);
        self.frames += 1;
        Ok(())
    }
}

fn request() -> GenerationRequest {
    let (w, h) = (64u32, 36u32);
    let data = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
    GenerationRequest {
        app: App::DEFAULT,
        image: Some(RgbImage {
            width: w,
            height: h,
            data,
        }),
        aspect_ratio: AspectRatio::default(),
        prompt: "a cat".into(),
        negative_prompt: String::new(),
        num_frames: 17,
        num_inference_steps: 2,
        num_refine_inference_steps: 4,
        guidance_scale: 1.0,
        seed: 5,
        acceleration: Acceleration::Regular,
    }
}

/// The tiny model with `hook`; `builds` counts how often it was built, and builds after
/// `fail_after` fail.
fn tiny_generator(
    hook: Option<PanicHook>,
    builds: Arc<AtomicU32>,
    fail_after: u32,
) -> Arc<dyn VideoGenerator> {
    generator_from(
        move || {
            if builds.fetch_add(1, Ordering::SeqCst) >= fail_after {
                return Err(PipelineError::InvalidRequest("no more builds".into()));
            }
            let mut n = tiny::networks(&Device::Cpu, DType::F32, TextEncoderPolicy::Resident)?;
            n.config.panic_hook = hook.clone();
            Ok(n)
        },
        &Device::Cpu,
    )
    .unwrap()
}

fn run(g: &dyn VideoGenerator) -> std::thread::Result<Result<(u32, u64), GenerationError>> {
    catch_unwind(AssertUnwindSafe(|| {
        let mut sink = HashSink::default();
        g.generate(&request(), &mut sink, &CancelToken::new())
            .map(|_| (sink.frames, sink.hasher.finish()))
    }))
}

#[test]
fn a_panicking_run_is_followed_by_a_good_one_on_a_rebuilt_engine() {
    let reference = tiny_generator(None, Arc::default(), u32::MAX);
    let expected = run(reference.as_ref()).unwrap().unwrap();

    let builds = Arc::new(AtomicU32::new(0));
    let g = tiny_generator(Some(PanicHook::on_runs(&[1])), builds.clone(), u32::MAX);
    assert!(run(g.as_ref()).is_err(), "run 1 panics (test hook)");
    g.recover().unwrap();
    assert_eq!(builds.load(Ordering::SeqCst), 2, "rebuilt once");
    let second = run(g.as_ref()).unwrap().unwrap();
    assert_eq!(second, expected, "the rebuilt engine makes the same video");
    g.recover().unwrap();
    assert_eq!(
        builds.load(Ordering::SeqCst),
        2,
        "no rebuild without a panic"
    );
}

#[test]
fn an_engine_that_cannot_be_rebuilt_is_reported_unavailable() {
    let g = tiny_generator(Some(PanicHook::on_runs(&[1])), Arc::default(), 1);
    assert!(run(g.as_ref()).is_err());
    let err = g.recover().unwrap_err();
    assert!(matches!(err, GenerationError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("no more builds"), "{err}");
    let err = run(g.as_ref()).unwrap().unwrap_err();
    assert!(matches!(err, GenerationError::Unavailable(_)), "{err}");
}
