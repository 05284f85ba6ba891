//! The whole product path for one request, as its app's stage plan says
//! ([`StagePlan`]): stage 1 (image- or text-to-video, then continuation segments for long
//! videos), and for the 720p apps each segment refined to 720p/30 fps; every segment's
//! frames go to the sink as soon as it is decoded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};

use crate::api::{
    CancelToken, GenerationError, GenerationRequest, GenerationSink, GenerationSummary, ModelInfo,
    PipelineError, Progress, RgbImage, Stage, VideoFrame, VideoGenerator,
};
use crate::buckets;
use crate::components::{Denoiser, LatentCodec, PromptEncoder, Result, TextConditioning};
use crate::hooks::{Hooks, NoTrace};
use crate::image::{resize_lanczos_cancellable, to_model_input};
use crate::noise::{NoiseSource, SeededNoise};
use crate::output::{stream_frames, FrameWindow};
use crate::plan::Segment;
use crate::refine::{generate_refine, RefineArgs, RefineCondition};
use crate::stage1::{
    generate_continuation, generate_i2v, generate_t2v, ContinuationArgs, Stage1Args,
};
use crate::stage_plan::StagePlan;

/// How stage 1 samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage1Mode {
    /// Base model, `num_inference_steps` steps, CFG with `guidance_scale`.
    Full,
    /// cfg_step LoRA, distilled schedule of `distill_steps` steps, no CFG.
    Distilled,
}

/// Fixed settings of an engine (the official values by default).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Shown in [`ModelInfo::name`].
    pub name: String,
    /// True for the random tiny model.
    pub smoke_test_model: bool,
    /// Stage-1 bucket table (480p, scale 16).
    pub stage1_buckets: Vec<(f64, [u32; 2])>,
    /// Refinement bucket table (720p, scale 64).
    pub refine_buckets: Vec<(f64, [u32; 2])>,
    /// Scheduler shift.
    pub shift: f32,
    /// Refinement noise level.
    pub t_thresh: f32,
    /// Frames of a stage-1 segment.
    pub segment_frames: usize,
    /// Condition frames of a continuation segment.
    pub cond_frames: usize,
    /// What `acceleration: "regular"` selects.
    pub regular_mode: Stage1Mode,
    /// Steps of the distilled stage 1.
    pub distill_steps: usize,
    /// Keep 15 fps (no temporal doubling) in refinement.
    pub spatial_only: bool,
    /// `enhance_hf` for continuation segments of the full stage 1.
    pub enhance_hf: bool,
    /// Test hook: runs that panic on purpose (only the tiny model and tests set it).
    pub panic_hook: Option<PanicHook>,
}

/// Test hook for the panic path of the workers: the listed runs (1-based, counted over
/// every engine sharing this hook, rebuilds included) panic inside the first stage-1
/// denoising step. Only the built-in tiny model sets it (from its test environment
/// variable, see the `tiny` module) and tests; a checkpoint engine never has one.
#[derive(Debug, Clone)]
pub struct PanicHook {
    runs: Arc<[u32]>,
    count: Arc<AtomicU32>,
}

impl PanicHook {
    /// Panics in the runs numbered `runs` (1 = the first run).
    pub fn on_runs(runs: &[u32]) -> Self {
        Self {
            runs: runs.into(),
            count: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Counts a run; true when this one is to panic.
    fn next_run_panics(&self) -> bool {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        self.runs.contains(&n)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            name: "LongCat-Video".into(),
            smoke_test_model: false,
            stage1_buckets: buckets::ASPECT_RATIO_627.to_vec(),
            refine_buckets: buckets::ASPECT_RATIO_960_F64.to_vec(),
            shift: 12.0,
            t_thresh: 0.5,
            segment_frames: crate::plan::SEGMENT_FRAMES,
            cond_frames: crate::plan::COND_FRAMES,
            regular_mode: Stage1Mode::Full,
            distill_steps: 16,
            spatial_only: false,
            enhance_hf: true,
            panic_hook: None,
        }
    }
}

/// The networks plus settings; runs requests one at a time.
pub struct Engine<T, V, D> {
    /// Prompt encoder.
    pub text: T,
    /// VAE.
    pub vae: V,
    /// DiT.
    pub dit: D,
    /// Settings.
    pub config: EngineConfig,
    /// Device the tensors live on.
    pub device: Device,
}

/// Progress bookkeeping across stages and segments (ETA from the mean step time).
struct Reporter<'a> {
    sink: &'a mut dyn GenerationSink,
    start: Instant,
    done: u64,
    total: u64,
    segments: u32,
}

impl Reporter<'_> {
    fn report(&mut self, stage: Stage, segment: u32, step: u32, total: u32) {
        let eta = if self.done > 0 {
            let per = self.start.elapsed().as_secs_f64() / self.done as f64;
            Some(Duration::from_secs_f64(
                per * self.total.saturating_sub(self.done) as f64,
            ))
        } else {
            None
        };
        self.sink.progress(&Progress {
            stage,
            segment,
            segments: self.segments,
            step,
            total,
            eta,
        });
    }
}

/// 8-bit frames → `[1, 3, F, H, W]` in `[-1, 1]`.
fn frames_to_tensor<'a>(
    frames: impl Iterator<Item = &'a RgbImage>,
    device: &Device,
) -> Result<Tensor> {
    let ts = frames
        .map(|f| to_model_input(f, device))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&ts, 0)?
        .permute((1, 0, 2, 3))?
        .unsqueeze(0)?
        .contiguous()?)
}

fn frame_image(f: VideoFrame) -> RgbImage {
    RgbImage {
        width: f.width,
        height: f.height,
        data: f.data,
    }
}

impl<T: PromptEncoder, V: LatentCodec, D: Denoiser> Engine<T, V, D> {
    /// Checks what the stage plan cannot: the frame range, positive step counts, and that
    /// the networks have what the plan needs (the cfg_step LoRA of the distilled stage 1).
    fn validate(&self, req: &GenerationRequest, plan: &StagePlan) -> Result<()> {
        let bad = |m: String| Err(PipelineError::InvalidRequest(m));
        if !longcat_core::limits::num_frames_in_range(req.num_frames) {
            let (lo, hi) = longcat_core::limits::NUM_FRAMES;
            return bad(format!("num_frames {} outside {lo}..={hi}", req.num_frames));
        }
        if plan.stage1.steps == 0 || plan.refine.as_ref().is_some_and(|r| r.schedule_steps == 0) {
            return bad("step counts must be positive".into());
        }
        let needed = [
            (plan.stage1.denoiser_mode().lora, "the distilled stage 1"),
            (
                plan.refine.as_ref().and_then(|r| r.denoiser_mode().lora),
                "the refinement stage",
            ),
        ];
        for (lora, stage) in needed {
            if let Some(lora) = lora.filter(|&l| !self.dit.has_lora(l)) {
                return Err(PipelineError::Unavailable(format!(
                    "{}: {stage} needs the `{}` LoRA, which this checkpoint does not have \
                     (lora/{}.safetensors)",
                    req.app,
                    lora.name(),
                    lora.name()
                )));
            }
        }
        Ok(())
    }

    /// The stage plan `req` runs under this engine's settings.
    pub fn plan(&self, req: &GenerationRequest) -> Result<StagePlan> {
        let plan = StagePlan::new(req, &self.config)?;
        self.validate(req, &plan)?;
        Ok(plan)
    }

    /// Runs one request, delivering frames to `sink` segment by segment.
    pub fn run(
        &mut self,
        req: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationSummary> {
        let plan = self.plan(req)?;
        let cfg = self.config.clone();
        let panic_now = cfg
            .panic_hook
            .as_ref()
            .is_some_and(PanicHook::next_run_panics);
        let segments = plan.segments.segments.len() as u32;
        if cfg.smoke_test_model {
            sink.log("smoke-test model: random tiny weights, the output is noise");
        }
        let (out_h, out_w) = plan.output_size();
        sink.log(&format!(
            "{}: {} stage-1 frames in {segments} segment(s), stage 1 {:?} with {} steps{}, {}; \
             {} frames of {out_w}x{out_h} at {} fps",
            req.app,
            plan.segments.stage1_frames,
            plan.stage1.mode,
            plan.stage1.steps,
            if plan.stage1.cfg { " and CFG" } else { "" },
            match &plan.refine {
                Some(r) => format!("{} refinement steps", r.steps),
                None => "no refinement".into(),
            },
            plan.output_frames(),
            plan.fps(),
        ));
        let mut rep = Reporter {
            sink,
            start: Instant::now(),
            done: 0,
            total: plan.planned_steps(&cfg),
            segments,
        };
        let mut noise = SeededNoise::new(req.seed);

        rep.report(Stage::EncodeText, 0, 0, 1);
        let cfg_on = plan.stage1.cfg;
        // The text encoder is on the device only while this job's prompts are encoded
        // (its policy decides what release does).
        let (positive, negative) = stage(tracing::info_span!("text_encode"), || {
            self.text.acquire()?;
            let encoded = (|| {
                cancel.check()?;
                let positive = self.text.encode_prompt(&req.prompt)?;
                cancel.check()?;
                let negative = if cfg_on {
                    Some(self.text.encode_prompt(&req.negative_prompt)?)
                } else {
                    None
                };
                Ok::<_, PipelineError>((positive, negative))
            })();
            self.text.release()?;
            encoded
        })?;
        cancel.check()?;

        // The condition image at the stage-1 and refinement sizes (image-to-video only).
        let mut images = None;
        if let Some(image) = req.image.as_ref() {
            rep.report(Stage::EncodeImage, 0, 0, 1);
            let s1 = &plan.stage1;
            let image1 = to_model_input(
                &resize_lanczos_cancellable(image, s1.width, s1.height, cancel)?,
                &self.device,
            )?;
            let image2 = match &plan.refine {
                Some(r) => Some(to_model_input(
                    &resize_lanczos_cancellable(image, r.width, r.height, cancel)?,
                    &self.device,
                )?),
                None => None,
            };
            images = Some((image1, image2));
            cancel.check()?;
        }
        let (image1, image2) = images.unzip();

        let mut ctx = SegmentCtx {
            positive,
            negative,
            image1,
            image2: image2.flatten(),
            stage1_tail: Vec::new(),
            refined_tail: VecDeque::new(),
            delivered: 0,
        };
        for (k, seg) in plan.segments.segments.iter().enumerate() {
            self.run_segment(
                k, seg, &plan, &mut ctx, &mut noise, &mut rep, cancel, panic_now,
            )?;
        }
        Ok(GenerationSummary {
            frames: ctx.delivered,
            width: out_w,
            height: out_h,
            seed: req.seed,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn run_segment(
        &mut self,
        k: usize,
        seg: &Segment,
        plan: &StagePlan,
        ctx: &mut SegmentCtx,
        noise: &mut dyn NoiseSource,
        rep: &mut Reporter<'_>,
        cancel: &CancelToken,
        panic_now: bool,
    ) -> Result<()> {
        let cfg = &self.config;
        let seg_no = k as u32;
        // Stage 1.
        self.dit.set_mode(plan.stage1.denoiser_mode())?;
        let s1 = &plan.stage1;
        let base = Stage1Args {
            num_frames: seg.frames,
            steps: s1.steps,
            distill: s1.mode == Stage1Mode::Distilled,
            guidance_scale: s1.guidance_scale,
            shift: cfg.shift,
        };
        let span = tracing::info_span!("denoise", segment = seg_no, steps = s1.steps);
        let latents = stage(span, || {
            let mut on_step = |s: u32, t: u32| {
                // The panic test hook (see `PanicHook`), mid-run with the DiT mode set.
                if panic_now {
                    panic!("test hook: this run panics on purpose (PanicHook)");
                }
                rep.done += 1;
                rep.report(Stage::Base, seg_no, s, t);
            };
            let mut trace = NoTrace;
            let mut hooks = Hooks {
                cancel,
                on_step: &mut on_step,
                trace: &mut trace,
            };
            match (k, &ctx.image1) {
                (0, Some(image)) => generate_i2v(
                    &self.dit,
                    &self.vae,
                    image,
                    &ctx.positive,
                    ctx.negative.as_ref(),
                    &base,
                    noise,
                    &mut hooks,
                ),
                (0, None) => generate_t2v(
                    &self.dit,
                    &self.vae,
                    s1.height as usize,
                    s1.width as usize,
                    &ctx.positive,
                    ctx.negative.as_ref(),
                    &base,
                    noise,
                    &mut hooks,
                ),
                _ => {
                    let cond = frames_to_tensor(ctx.stage1_tail.iter(), &self.device)?;
                    let args = ContinuationArgs {
                        base,
                        enhance_hf: cfg.enhance_hf,
                    };
                    generate_continuation(
                        &self.dit,
                        &self.vae,
                        &cond,
                        &ctx.positive,
                        ctx.negative.as_ref(),
                        &args,
                        noise,
                        &mut hooks,
                    )
                }
            }
        })?;
        cancel.check()?;
        rep.report(Stage::Decode, seg_no, 0, 1);
        let Some(refine) = &plan.refine else {
            // 480p: stage 1's new frames are the output; the last `cond_frames` of them
            // (with the condition frames before them) condition the next segment.
            let keep = cfg.cond_frames;
            let mut tail: VecDeque<RgbImage> = std::mem::take(&mut ctx.stage1_tail).into();
            let first = ctx.delivered;
            let sink = &mut *rep.sink;
            let window = FrameWindow {
                skip: seg.cond_frames,
                take: seg.new_frames(),
            };
            let span = tracing::info_span!("vae_decode", segment = seg_no, pass = "stage1");
            let n = stage(span, || {
                stream_frames(&self.vae, &latents, window, first, cancel, &mut |f| {
                    tail.push_back(frame_image(f.clone()));
                    if tail.len() > keep {
                        tail.pop_front();
                    }
                    Ok(sink.frame(f)?)
                })
            })?;
            ctx.stage1_tail = tail.into();
            ctx.delivered += n as u32;
            return Ok(());
        };
        let mut decoded: Vec<RgbImage> = Vec::with_capacity(seg.frames);
        let span = tracing::info_span!("vae_decode", segment = seg_no, pass = "stage1");
        stage(span, || {
            stream_frames(
                &self.vae,
                &latents,
                FrameWindow {
                    skip: 0,
                    take: seg.frames,
                },
                0,
                cancel,
                &mut |f| {
                    decoded.push(frame_image(f));
                    Ok(())
                },
            )
        })?;
        drop(latents);
        // The refinement window: the previous segment's last stage-1 frames (as handed
        // over), then this segment's new frames.
        let mut window = std::mem::take(&mut ctx.stage1_tail);
        window.extend(decoded.drain(seg.cond_frames..));
        drop(decoded);
        ctx.stage1_tail = window[window.len().saturating_sub(cfg.cond_frames)..].to_vec();
        cancel.check()?;

        // Refinement.
        self.dit.set_mode(refine.denoiser_mode())?;
        let cond_video = if k == 0 {
            None
        } else {
            Some(frames_to_tensor(ctx.refined_tail.iter(), &self.device)?)
        };
        // Segment 0: the image (image-to-video) or nothing (text-to-video, the official
        // refinement with `image=None`); later segments: the previous refined frames.
        let condition = match (&cond_video, &ctx.image2) {
            (Some(v), _) => RefineCondition::Video(v),
            (None, Some(image)) => RefineCondition::Image(image),
            (None, None) => RefineCondition::None,
        };
        let args = RefineArgs {
            steps: refine.schedule_steps,
            t_thresh: cfg.t_thresh,
            shift: cfg.shift,
            spatial_only: !refine.doubles_fps,
        };
        let (h, w) = (refine.height as usize, refine.width as usize);
        let span = tracing::info_span!("refine", segment = seg_no, steps = refine.steps);
        let (latents, layout) = stage(span, || {
            let mut on_step = |s: u32, t: u32| {
                rep.done += 1;
                rep.report(Stage::Refine, seg_no, s, t);
            };
            let mut trace = NoTrace;
            let mut hooks = Hooks {
                cancel,
                on_step: &mut on_step,
                trace: &mut trace,
            };
            generate_refine(
                &self.dit,
                &self.vae,
                &window,
                h,
                w,
                condition,
                &ctx.positive,
                &args,
                noise,
                &mut hooks,
            )
        })?;
        drop(window);
        drop(cond_video);
        cancel.check()?;
        rep.report(Stage::Decode, seg_no, 0, 1);
        let cond_out = if k == 0 { 0 } else { ctx.refined_tail.len() };
        let keep_tail = if refine.doubles_fps {
            2 * cfg.cond_frames
        } else {
            cfg.cond_frames
        };
        let window = FrameWindow {
            skip: layout.cond_frames_added + cond_out,
            take: layout.new_frames - cond_out,
        };
        let first = ctx.delivered;
        let tail = &mut ctx.refined_tail;
        let sink = &mut *rep.sink;
        let span = tracing::info_span!("vae_decode", segment = seg_no, pass = "refine");
        let n = stage(span, || {
            stream_frames(&self.vae, &latents, window, first, cancel, &mut |f| {
                tail.push_back(frame_image(f.clone()));
                if tail.len() > keep_tail {
                    tail.pop_front();
                }
                Ok(sink.frame(f)?)
            })
        })?;
        ctx.delivered += n as u32;
        Ok(())
    }
}

/// Runs one pipeline stage inside `span` (a child of the caller's span, e.g. the worker's
/// `job` span with its `request_id`) and logs its end with the duration at debug level.
fn stage<T>(span: tracing::Span, run: impl FnOnce() -> Result<T>) -> Result<T> {
    let _entered = span.enter();
    let started = Instant::now();
    let out = run();
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        ok = out.is_ok(),
        "stage finished"
    );
    out
}

/// State carried from one segment to the next.
struct SegmentCtx {
    positive: TextConditioning,
    negative: Option<TextConditioning>,
    /// The condition image at the stage-1 size (image-to-video).
    image1: Option<Tensor>,
    /// The condition image at the refinement size (image-to-video that refines).
    image2: Option<Tensor>,
    /// Last stage-1 frames (condition of the next continuation segment).
    stage1_tail: Vec<RgbImage>,
    /// Last refined frames (condition of the next refinement segment).
    refined_tail: VecDeque<RgbImage>,
    delivered: u32,
}

/// Builds an engine: at start and again after a panic.
pub type EngineBuilder<T, V, D> = Box<dyn Fn() -> Result<Engine<T, V, D>> + Send + Sync>;

/// An [`Engine`] as a [`VideoGenerator`] for the one model thread that owns it. The lock is
/// never contended (one thread runs it); it is there because [`VideoGenerator`] takes
/// `&self`. A run that panics leaves the lock poisoned: the next [`VideoGenerator::recover`]
/// or run drops the engine and builds a new one, so a panic costs that job only. When the
/// rebuild fails the generator answers [`PipelineError::Unavailable`] from then on.
pub struct RebuildableEngine<T, V, D> {
    slot: Mutex<EngineSlot<T, V, D>>,
    build: EngineBuilder<T, V, D>,
    info: ModelInfo,
}

enum EngineSlot<T, V, D> {
    Ready(Box<Engine<T, V, D>>),
    Lost(String),
}

impl<T, V, D> RebuildableEngine<T, V, D> {
    /// Builds the first engine with `build` (kept for rebuilds).
    pub fn new(build: EngineBuilder<T, V, D>) -> Result<Self> {
        let engine = build()?;
        let info = ModelInfo {
            name: engine.config.name.clone(),
            smoke_test_model: engine.config.smoke_test_model,
            native_fps: if engine.config.spatial_only { 15 } else { 30 },
        };
        Ok(Self {
            slot: Mutex::new(EngineSlot::Ready(Box::new(engine))),
            build,
            info,
        })
    }

    /// The engine slot; after a panic (a poisoned lock) the old engine is dropped first
    /// (freeing its memory) and a new one built in its place.
    fn slot(&self) -> MutexGuard<'_, EngineSlot<T, V, D>> {
        match self.slot.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                self.slot.clear_poison();
                *guard = EngineSlot::Lost("being rebuilt after a panic".into());
                *guard = match (self.build)() {
                    Ok(engine) => {
                        tracing::warn!("model engine rebuilt after a panic");
                        EngineSlot::Ready(Box::new(engine))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the model engine could not be rebuilt");
                        EngineSlot::Lost(format!("rebuilding it after a panic failed: {e}"))
                    }
                };
                guard
            }
        }
    }
}

impl<T, V, D> VideoGenerator for RebuildableEngine<T, V, D>
where
    T: PromptEncoder + Send,
    V: LatentCodec + Send,
    D: Denoiser + Send,
{
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn generate(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationSummary, GenerationError> {
        match &mut *self.slot() {
            EngineSlot::Ready(engine) => Ok(engine.run(request, sink, cancel)?),
            EngineSlot::Lost(why) => Err(GenerationError::Unavailable(why.clone())),
        }
    }

    fn recover(&self) -> Result<(), GenerationError> {
        match &*self.slot() {
            EngineSlot::Ready(_) => Ok(()),
            EngineSlot::Lost(why) => Err(GenerationError::Unavailable(why.clone())),
        }
    }
}
