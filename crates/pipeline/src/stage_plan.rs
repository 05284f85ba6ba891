//! The stage plan of one request: which stages run for its app, with how many steps, with
//! or without CFG, with which LoRA and attention, at which size, and what comes out (the
//! table in `docs/pipeline.md`). The engine follows it; tests pin it per app.

use crate::api::{Acceleration, GenerationRequest, PipelineError, Task};
use crate::buckets;
use crate::components::{DenoiserMode, LoraKind, Result};
use crate::engine::{EngineConfig, Stage1Mode};
use crate::plan::SegmentPlan;
use crate::schedule::Schedule;

/// Stage 1 (480p/15 fps) of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage1Plan {
    /// Base model or distilled (cfg_step LoRA, distilled sigmas).
    pub mode: Stage1Mode,
    /// Steps of the stage-1 schedule (`num_inference_steps`, or the configured distilled
    /// count for `acceleration: "regular"` when that selects the distilled mode).
    pub steps: usize,
    /// Guidance scale; CFG (with the negative prompt) runs only when [`Stage1Plan::cfg`].
    pub guidance_scale: f32,
    /// Whether classifier-free guidance runs (full mode with a guidance scale above 1).
    pub cfg: bool,
    /// The first segment starts from the condition image (image-to-video) or from pure
    /// noise (text-to-video).
    pub task: Task,
    /// Frame height of stage 1 (a bucket of [`EngineConfig::stage1_buckets`]).
    pub height: u32,
    /// Frame width of stage 1.
    pub width: u32,
}

impl Stage1Plan {
    /// Adapter state of the DiT in stage 1: the cfg_step LoRA when distilled, dense
    /// attention.
    pub fn denoiser_mode(&self) -> DenoiserMode {
        DenoiserMode {
            lora: (self.mode == Stage1Mode::Distilled).then_some(LoraKind::CfgStep),
            bsa: false,
        }
    }
}

/// The refinement stage (720p apps).
#[derive(Debug, Clone, PartialEq)]
pub struct RefinePlan {
    /// Length of the base schedule (`num_refine_inference_steps`).
    pub schedule_steps: usize,
    /// DiT forwards per segment (the schedule's steps below `t_thresh`, plus its first).
    pub steps: usize,
    /// Frame height after refinement (a bucket of [`EngineConfig::refine_buckets`]).
    pub height: u32,
    /// Frame width after refinement.
    pub width: u32,
    /// 15 → 30 fps doubling (off with [`EngineConfig::spatial_only`]).
    pub doubles_fps: bool,
}

impl RefinePlan {
    /// Adapter state of the DiT in refinement: the refinement LoRA and block sparse
    /// attention.
    pub fn denoiser_mode(&self) -> DenoiserMode {
        DenoiserMode {
            lora: Some(LoraKind::Refinement),
            bsa: true,
        }
    }
}

/// Everything a request runs, decided before any network runs.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    /// Stage-1 segments (the first from the image or from noise, then continuations).
    pub segments: SegmentPlan,
    /// Stage 1.
    pub stage1: Stage1Plan,
    /// Refinement, for the apps that refine (720p); `None` delivers stage 1's frames.
    pub refine: Option<RefinePlan>,
}

impl StagePlan {
    /// The plan of `req` under `cfg`. Refuses a request whose image does not fit its app
    /// (image-to-video without an image, text-to-video with one, an empty image).
    pub fn new(req: &GenerationRequest, cfg: &EngineConfig) -> Result<Self> {
        let bad = |m: String| Err(PipelineError::InvalidRequest(m));
        let app = req.app;
        let (height, width) = match (&req.image, app.task) {
            (Some(image), Task::ImageToVideo) => {
                if image.width == 0 || image.height == 0 {
                    return bad("empty condition image".into());
                }
                pick_bucket(&cfg.stage1_buckets, |t| {
                    buckets::pick(t, image.height, image.width)
                })?
            }
            (None, Task::ImageToVideo) => {
                return bad(format!("{app}: image-to-video needs a condition image"))
            }
            (Some(_), Task::TextToVideo) => {
                return bad(format!("{app}: text-to-video takes no condition image"))
            }
            (None, Task::TextToVideo) => pick_bucket(&cfg.stage1_buckets, |t| {
                buckets::pick_aspect(t, req.aspect_ratio)
            })?,
        };
        let mode = if app.distilled {
            Stage1Mode::Distilled
        } else {
            match req.acceleration {
                Acceleration::None => Stage1Mode::Full,
                Acceleration::Regular => cfg.regular_mode,
            }
        };
        let steps = if mode == Stage1Mode::Distilled && !app.distilled {
            cfg.distill_steps
        } else {
            req.num_inference_steps as usize
        };
        let stage1 = Stage1Plan {
            mode,
            steps,
            guidance_scale: req.guidance_scale,
            cfg: mode == Stage1Mode::Full && req.guidance_scale > 1.0,
            task: app.task,
            height,
            width,
        };
        let refine = if app.refines() {
            let (h2, w2) = pick_bucket(&cfg.refine_buckets, |t| buckets::pick(t, height, width))?;
            let schedule_steps = req.num_refine_inference_steps as usize;
            Some(RefinePlan {
                schedule_steps,
                steps: Schedule::refine(schedule_steps, cfg.shift, cfg.t_thresh).len(),
                height: h2,
                width: w2,
                doubles_fps: !cfg.spatial_only,
            })
        } else {
            None
        };
        Ok(Self {
            segments: SegmentPlan::new(
                req.num_frames as usize,
                cfg.segment_frames,
                cfg.cond_frames,
            ),
            stage1,
            refine,
        })
    }

    /// Frames delivered: stage 1's `4⌊n/4⌋+1`, doubled by a refinement that doubles fps.
    pub fn output_frames(&self) -> usize {
        match &self.refine {
            Some(r) => self.segments.output_frames(!r.doubles_fps),
            None => self.segments.stage1_frames,
        }
    }

    /// Frame rate of the delivered frames: 30 after refinement (15 spatial-only), 15 from
    /// stage 1.
    pub fn fps(&self) -> u32 {
        match &self.refine {
            Some(r) if r.doubles_fps => 30,
            _ => 15,
        }
    }

    /// `(height, width)` of the delivered frames.
    pub fn output_size(&self) -> (u32, u32) {
        match &self.refine {
            Some(r) => (r.height, r.width),
            None => (self.stage1.height, self.stage1.width),
        }
    }

    /// Stage-1 DiT steps of segment `k` (continuations without distill run the
    /// `enhance_hf` schedule, which has its own length).
    pub fn stage1_steps(&self, k: usize, cfg: &EngineConfig) -> usize {
        let distill = self.stage1.mode == Stage1Mode::Distilled;
        if k == 0 {
            Schedule::stage1(self.stage1.steps, distill, cfg.shift).len()
        } else {
            Schedule::continuation(
                self.stage1.steps,
                distill,
                cfg.shift,
                cfg.enhance_hf && !distill,
            )
            .len()
        }
    }

    /// Denoising steps of the whole request (for the ETA).
    pub fn planned_steps(&self, cfg: &EngineConfig) -> u64 {
        let refine = self.refine.as_ref().map_or(0, |r| r.steps);
        (0..self.segments.segments.len())
            .map(|k| (self.stage1_steps(k, cfg) + refine) as u64)
            .sum()
    }
}

/// `(height, width)` from a bucket table, refusing an empty one.
fn pick_bucket(
    table: &[(f64, [u32; 2])],
    pick: impl Fn(&[(f64, [u32; 2])]) -> (u32, u32),
) -> Result<(u32, u32)> {
    if table.is_empty() {
        return Err(PipelineError::InvalidRequest("empty bucket table".into()));
    }
    Ok(pick(table))
}
