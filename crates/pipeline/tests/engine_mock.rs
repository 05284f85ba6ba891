//! The engine end to end with small stand-in networks: segment planning, frame streaming,
//! progress, cancellation and seed reproducibility.

use candle_core::{DType, Device, Tensor};
use longcat_pipeline::buckets;
use longcat_pipeline::components::{
    Denoiser, DenoiserMode, LatentCodec, LoraKind, Posterior, PromptEncoder, Result,
    TextConditioning,
};
use longcat_pipeline::engine::{Engine, EngineConfig};
use longcat_pipeline::{
    Acceleration, App, AspectRatio, CancelToken, GenerationError, GenerationRequest,
    GenerationSink, PipelineError, Progress, RgbImage, Stage, VideoFrame,
};

struct Text;
impl PromptEncoder for Text {
    fn encode_prompt(&self, prompt: &str) -> Result<TextConditioning> {
        let v: Vec<f32> = (0..32)
            .map(|i| (prompt.len() as f32 * 0.1 + i as f32 * 0.01).sin())
            .collect();
        Ok(TextConditioning {
            embeds: Tensor::from_vec(v, (1, 1, 8, 4), &Device::Cpu)?,
            mask: Tensor::ones((1, 8), DType::I64, &Device::Cpu)?,
        })
    }
}

/// Picks every 4th frame and pools 8×8; decodes by repeating.
struct Vae;
impl LatentCodec for Vae {
    fn encode(&self, video: &Tensor) -> Result<Posterior> {
        let (b, _, f, h, w) = video.dims5()?;
        let idx: Vec<u32> = (0..f as u32).step_by(4).collect();
        let t = idx.len();
        let picked = video
            .index_select(&Tensor::new(idx.as_slice(), video.device())?, 2)?
            .reshape((b, 3 * t, h, w))?
            .avg_pool2d(8)?
            .reshape((b, 3, t, h / 8, w / 8))?;
        let mean = Tensor::cat(&[&picked; 6], 1)?.narrow(1, 0, 16)?;
        let logvar = (mean.zeros_like()? - 4.0)?;
        Ok(Posterior { mean, logvar })
    }
    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let mut out = Vec::new();
        self.decode_chunks(z, &mut |c| {
            out.push(c);
            Ok(())
        })?;
        Ok(Tensor::cat(&out, 2)?)
    }
    fn decode_chunks(&self, z: &Tensor, sink: &mut dyn FnMut(Tensor) -> Result<()>) -> Result<()> {
        let (b, _, t, h, w) = z.dims5()?;
        for i in 0..t {
            let n = if i == 0 { 1 } else { 4 };
            let frame = z.narrow(2, i, 1)?.narrow(1, 0, 3)?.reshape((b, 3, h, w))?;
            let up = frame.upsample_nearest2d(h * 8, w * 8)?.tanh()?;
            let up = up.unsqueeze(2)?;
            sink(Tensor::cat(&vec![&up; n], 2)?)?;
        }
        Ok(())
    }
    fn latent_stats(&self) -> (Vec<f32>, Vec<f32>) {
        ((0..16).map(|i| i as f32 * 0.01).collect(), vec![1.5; 16])
    }
}

/// One recorded DiT call: the mode it ran under and what it was given.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    mode: DenoiserMode,
    /// Batch size (2 with CFG).
    batch: usize,
    /// Latent frames given (noise frames only for the cached path).
    frames: usize,
    /// Latent height and width.
    hw: (usize, usize),
    /// Clean condition latents inside the batch.
    cond: usize,
    /// The KV-cached continuation path.
    cached: bool,
}

struct Dit {
    modes: Vec<DenoiserMode>,
    calls: std::cell::RefCell<Vec<Call>>,
    loras: Vec<LoraKind>,
}
impl Default for Dit {
    fn default() -> Self {
        Self {
            modes: Vec::new(),
            calls: Default::default(),
            loras: vec![LoraKind::CfgStep, LoraKind::Refinement],
        }
    }
}
impl Dit {
    fn record(&self, x: &Tensor, cond: usize, cached: bool) -> Result<()> {
        let (b, _, f, h, w) = x.dims5()?;
        self.calls.borrow_mut().push(Call {
            mode: self.modes.last().copied().unwrap_or_default(),
            batch: b,
            frames: f,
            hw: (h, w),
            cond,
            cached,
        });
        Ok(())
    }
    fn output(x: &Tensor, t: &Tensor, text: &TextConditioning) -> Result<Tensor> {
        let (b, _, f, _, _) = x.dims5()?;
        let tt = (t.reshape((b, 1, f, 1, 1))? * 1e-3)?;
        let txt = text.embeds.mean_all()?.to_scalar::<f32>()? as f64;
        Ok(((x * 0.9)?.broadcast_add(&tt)? + txt)?)
    }
}
impl Denoiser for Dit {
    type KvCache = Tensor;
    fn has_lora(&self, kind: LoraKind) -> bool {
        self.loras.contains(&kind)
    }
    fn set_mode(&mut self, mode: DenoiserMode) -> Result<()> {
        self.modes.push(mode);
        Ok(())
    }
    fn forward(&self, x: &Tensor, t: &Tensor, text: &TextConditioning, n: usize) -> Result<Tensor> {
        self.record(x, n, false)?;
        Self::output(x, t, text)
    }
    fn cache_condition(&self, cond: &Tensor, _text: &TextConditioning) -> Result<Tensor> {
        Ok(cond.mean_all()?)
    }
    fn forward_cached(
        &self,
        x: &Tensor,
        t: &Tensor,
        text: &TextConditioning,
        cache: &Tensor,
    ) -> Result<Tensor> {
        self.record(x, 0, true)?;
        Ok(Self::output(x, t, text)?.broadcast_add(cache)?)
    }
}

fn engine() -> Engine<Text, Vae, Dit> {
    let config = EngineConfig {
        name: "mock".into(),
        stage1_buckets: buckets::shrink(buckets::ASPECT_RATIO_627, 10, 16),
        refine_buckets: buckets::shrink(buckets::ASPECT_RATIO_960_F64, 10, 64),
        ..EngineConfig::default()
    };
    Engine {
        text: Text,
        vae: Vae,
        dit: Dit::default(),
        config,
        device: Device::Cpu,
    }
}

fn request(num_frames: u32, seed: u64) -> GenerationRequest {
    let (w, h) = (70u32, 40u32);
    let data = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
    GenerationRequest {
        app: App::DEFAULT,
        image: Some(RgbImage {
            width: w,
            height: h,
            data,
        }),
        aspect_ratio: AspectRatio::default(),
        prompt: "a cat".into(),
        negative_prompt: "blurry".into(),
        num_frames,
        num_inference_steps: 3,
        num_refine_inference_steps: 12,
        guidance_scale: 4.0,
        seed,
        acceleration: Acceleration::None,
    }
}

#[derive(Default)]
struct Collect {
    frames: Vec<VideoFrame>,
    progress: Vec<Progress>,
    cancel_on_base_step: Option<(u32, CancelToken)>,
}
impl GenerationSink for Collect {
    fn progress(&mut self, p: &Progress) {
        if let Some((seg, tok)) = &self.cancel_on_base_step {
            if p.stage == Stage::Base && p.segment == *seg && p.step == 1 {
                tok.cancel();
            }
        }
        self.progress.push(p.clone());
    }
    fn log(&mut self, _m: &str) {}
    fn frame(&mut self, f: VideoFrame) -> std::result::Result<(), GenerationError> {
        self.frames.push(f);
        Ok(())
    }
}

#[test]
fn single_segment_frames_and_progress() {
    let mut e = engine();
    let mut sink = Collect::default();
    let s = e
        .run(&request(17, 1), &mut sink, &CancelToken::new())
        .unwrap();
    assert_eq!(s.frames, 34);
    assert_eq!(sink.frames.len(), 34);
    assert_eq!((s.height, s.width), (64, 128));
    assert!(sink
        .frames
        .iter()
        .enumerate()
        .all(|(i, f)| f.index == i as u32));
    let base: Vec<_> = sink
        .progress
        .iter()
        .filter(|p| p.stage == Stage::Base)
        .collect();
    assert_eq!(base.len(), 3);
    let refine = sink
        .progress
        .iter()
        .filter(|p| p.stage == Stage::Refine)
        .count();
    assert_eq!(refine, 2);
    assert!(sink.progress.last().unwrap().eta.is_some());
}

#[test]
fn long_video_streams_every_segment() {
    let mut e = engine();
    let mut sink = Collect::default();
    // 120 → 121 stage-1 frames: 93 + (13 + 28).
    let s = e
        .run(&request(120, 2), &mut sink, &CancelToken::new())
        .unwrap();
    assert_eq!(s.frames, 242);
    assert!(sink
        .frames
        .iter()
        .enumerate()
        .all(|(i, f)| f.index == i as u32));
    let segs: std::collections::BTreeSet<u32> = sink.progress.iter().map(|p| p.segment).collect();
    assert_eq!(segs.len(), 2);
}

#[test]
fn same_seed_same_bytes() {
    let run = |seed| {
        let mut sink = Collect::default();
        engine()
            .run(&request(17, seed), &mut sink, &CancelToken::new())
            .unwrap();
        sink.frames
            .into_iter()
            .flat_map(|f| f.data)
            .collect::<Vec<u8>>()
    };
    let a = run(5);
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
}

#[test]
fn cancel_stops_between_steps() {
    let tok = CancelToken::new();
    let mut sink = Collect {
        cancel_on_base_step: Some((0, tok.clone())),
        ..Default::default()
    };
    let r = engine().run(&request(17, 1), &mut sink, &tok);
    assert!(matches!(r, Err(PipelineError::Cancelled)));
    assert!(sink.frames.is_empty());
    let base = sink
        .progress
        .iter()
        .filter(|p| p.stage == Stage::Base)
        .count();
    assert_eq!(base, 1);
}

/// What one app must run, written out by hand (not from the plan code): sizes are the
/// mock's scaled-down buckets (height, width).
struct Expected {
    app: &'static str,
    aspect: AspectRatio,
    stage1: (usize, usize),
    refine: Option<(usize, usize)>,
}

const EXPECTED: [Expected; 8] = [
    Expected {
        app: "fal-ai/longcat-video/text-to-video/480p",
        aspect: AspectRatio::Portrait,
        stage1: (80, 48),
        refine: None,
    },
    Expected {
        app: "fal-ai/longcat-video/text-to-video/720p",
        aspect: AspectRatio::Square,
        stage1: (64, 64),
        refine: Some((128, 128)),
    },
    Expected {
        app: "fal-ai/longcat-video/image-to-video/480p",
        aspect: AspectRatio::Landscape,
        stage1: (48, 80),
        refine: None,
    },
    Expected {
        app: "fal-ai/longcat-video/image-to-video/720p",
        aspect: AspectRatio::Landscape,
        stage1: (48, 80),
        refine: Some((64, 128)),
    },
    Expected {
        app: "fal-ai/longcat-video/distilled/text-to-video/480p",
        aspect: AspectRatio::Landscape,
        stage1: (48, 80),
        refine: None,
    },
    Expected {
        app: "fal-ai/longcat-video/distilled/text-to-video/720p",
        aspect: AspectRatio::Portrait,
        stage1: (80, 48),
        refine: Some((128, 64)),
    },
    Expected {
        app: "fal-ai/longcat-video/distilled/image-to-video/480p",
        aspect: AspectRatio::Square,
        stage1: (48, 80),
        refine: None,
    },
    Expected {
        app: "fal-ai/longcat-video/distilled/image-to-video/720p",
        aspect: AspectRatio::Portrait,
        stage1: (48, 80),
        refine: Some((64, 128)),
    },
];

/// A two-segment request (120 → 121 stage-1 frames: 93, then 13 + 28) for `app`: 3 base
/// steps with guidance 4, or 4 distilled steps (guidance is ignored there).
fn app_request(app: App, aspect: AspectRatio, acceleration: Acceleration) -> GenerationRequest {
    let mut r = request(120, 9);
    r.app = app;
    r.aspect_ratio = aspect;
    r.acceleration = acceleration;
    if !app.takes_image() {
        r.image = None;
    }
    if app.distilled {
        r.num_inference_steps = 4;
    }
    r
}

fn call(mode: DenoiserMode, batch: usize, frames: usize, px: (usize, usize), cond: usize) -> Call {
    Call {
        mode,
        batch,
        frames,
        hw: (px.0 / 8, px.1 / 8),
        cond,
        cached: false,
    }
}

/// The DiT calls each app must make, from the rules of docs/pipeline.md.
fn expected_calls(e: &Expected, app: App) -> (Vec<DenoiserMode>, Vec<Call>) {
    let stage1 = DenoiserMode {
        lora: app.distilled.then_some(LoraKind::CfgStep),
        bsa: false,
    };
    let refine = DenoiserMode {
        lora: Some(LoraKind::Refinement),
        bsa: true,
    };
    // Base: 3 steps with CFG (batch 2); the continuation runs the enhance_hf schedule
    // (the 2 shifted timesteps above 500, then 10 uniform ones). Distilled: 4 steps, no CFG.
    let (batch, steps0, steps1) = if app.distilled { (1, 4, 4) } else { (2, 3, 12) };
    let i2v = app.takes_image();
    let mut modes = vec![stage1];
    // Segment 0: 24 latent frames, the image latent in front for image-to-video.
    let mut calls = vec![call(stage1, batch, 24, e.stage1, usize::from(i2v)); steps0];
    if let Some(r) = e.refine {
        modes.push(refine);
        // 186 frames (+12 image-condition padding frames) → 48 noise latents (+4).
        let (frames, cond) = if i2v { (52, 4) } else { (48, 0) };
        calls.extend(vec![call(refine, 1, frames, r, cond); 2]);
    }
    modes.push(stage1);
    // Segment 1: 7 noise latents after 4 cached condition latents.
    let mut cont = call(stage1, batch, 7, e.stage1, 0);
    cont.cached = true;
    calls.extend(vec![cont; steps1]);
    if let Some(r) = e.refine {
        modes.push(refine);
        // 26 refined condition frames (8 latents) + 56 new frames (16 latents).
        calls.extend(vec![call(refine, 1, 24, r, 8); 2]);
    }
    (modes, calls)
}

fn run_app(
    req: &GenerationRequest,
) -> (
    longcat_pipeline::GenerationSummary,
    Collect,
    Vec<DenoiserMode>,
    Vec<Call>,
) {
    let mut e = engine();
    let mut sink = Collect::default();
    let s = e.run(req, &mut sink, &CancelToken::new()).unwrap();
    let calls = e.dit.calls.borrow().clone();
    (s, sink, e.dit.modes.clone(), calls)
}

#[test]
fn stage_plan_of_every_app() {
    for (e, app) in EXPECTED.iter().zip(App::ALL) {
        assert_eq!(app.id(), e.app, "EXPECTED is in App::ALL order");
        let req = app_request(app, e.aspect, Acceleration::Regular);
        let plan = engine().plan(&req).unwrap();
        let (s, sink, modes, calls) = run_app(&req);
        let (want_modes, want_calls) = expected_calls(e, app);
        assert_eq!(modes, want_modes, "{app}: LoRA/BSA per stage");
        assert_eq!(calls, want_calls, "{app}: DiT calls");
        // 480p: stage 1's 121 frames at 15 fps; 720p: doubled to 242 at 30 fps.
        let (frames, fps, (h, w)) = match e.refine {
            Some(size) => (242, 30, size),
            None => (121, 15, e.stage1),
        };
        assert_eq!(s.frames, frames, "{app}");
        assert_eq!(sink.frames.len(), frames as usize, "{app}");
        assert_eq!((s.height as usize, s.width as usize), (h, w), "{app}");
        assert!(sink
            .frames
            .iter()
            .enumerate()
            .all(|(i, f)| f.index == i as u32 && (f.height as usize, f.width as usize) == (h, w)));
        assert_eq!(plan.fps(), fps, "{app}");
        assert_eq!(plan.fps(), app.native_fps(), "{app}");
        assert_eq!(plan.output_frames(), frames as usize, "{app}");
        assert_eq!(plan.segments.segments.len(), 2, "{app}");
        assert_eq!(plan.stage1.cfg, !app.distilled, "{app}");
        // Progress: every DiT step reported once, under its stage.
        let reported = sink
            .progress
            .iter()
            .filter(|p| matches!(p.stage, Stage::Base | Stage::Refine))
            .count();
        assert_eq!(reported, want_calls.len(), "{app}");
        let encodes_image = sink.progress.iter().any(|p| p.stage == Stage::EncodeImage);
        assert_eq!(encodes_image, app.takes_image(), "{app}");
    }
}

#[test]
fn regular_acceleration_is_the_full_stage1_on_base_apps() {
    for app in App::ALL.into_iter().filter(|a| !a.distilled) {
        let none = run_app(&app_request(
            app,
            AspectRatio::Landscape,
            Acceleration::None,
        ));
        let regular = run_app(&app_request(
            app,
            AspectRatio::Landscape,
            Acceleration::Regular,
        ));
        assert_eq!(none.2, regular.2, "{app}");
        assert_eq!(none.3, regular.3, "{app}");
        let bytes = |c: &Collect| {
            c.frames
                .iter()
                .flat_map(|f| f.data.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(bytes(&none.1), bytes(&regular.1), "{app}");
    }
}

#[test]
fn distilled_steps_follow_the_request() {
    let app = App::from_id("fal-ai/longcat-video/distilled/image-to-video/480p").unwrap();
    for steps in [2, 16] {
        let mut req = app_request(app, AspectRatio::Landscape, Acceleration::None);
        req.num_frames = 17;
        req.num_inference_steps = steps;
        let (_, sink, _, calls) = run_app(&req);
        assert_eq!(calls.len(), steps as usize);
        assert!(calls.iter().all(|c| c.batch == 1));
        assert_eq!(sink.frames.len(), 17);
    }
}

#[test]
fn apps_need_their_loras() {
    for app in App::ALL {
        let mut e = engine();
        e.dit.loras = vec![LoraKind::Refinement];
        let req = app_request(app, AspectRatio::Landscape, Acceleration::None);
        let r = e.run(&req, &mut Collect::default(), &CancelToken::new());
        if app.distilled {
            let err = r.unwrap_err();
            assert!(
                matches!(&err, PipelineError::Unavailable(m) if m.contains("cfg_step_lora")),
                "{app}: {err}"
            );
            assert!(e.dit.calls.borrow().is_empty(), "refused before any work");
        } else {
            r.unwrap();
        }
    }
    // Without the refinement LoRA only the 480p apps run.
    for app in App::ALL {
        let mut e = engine();
        e.dit.loras = vec![LoraKind::CfgStep];
        let req = app_request(app, AspectRatio::Landscape, Acceleration::None);
        let r = e.run(&req, &mut Collect::default(), &CancelToken::new());
        if app.refines() {
            let err = r.unwrap_err();
            assert!(
                matches!(&err, PipelineError::Unavailable(m) if m.contains("refinement_lora")),
                "{app}: {err}"
            );
            assert!(e.dit.calls.borrow().is_empty(), "refused before any work");
        } else {
            r.unwrap();
        }
    }
}

#[test]
fn the_image_must_fit_the_app() {
    for app in App::ALL {
        let mut req = app_request(app, AspectRatio::Landscape, Acceleration::None);
        req.image = if app.takes_image() {
            None
        } else {
            request(17, 1).image
        };
        let err = engine()
            .run(&req, &mut Collect::default(), &CancelToken::new())
            .unwrap_err();
        assert!(
            matches!(err, PipelineError::InvalidRequest(_)),
            "{app}: {err}"
        );
    }
}
