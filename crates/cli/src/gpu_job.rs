//! `longcat gpu-check --only job`: the fal default job (image-to-video 720p, 162 frames, 40 +
//! 40 steps, CFG 4) through the real engine on full-size networks with random bf16 weights
//! drawn on the GPU, for as long as a time budget allows. Each stage change is printed with
//! a wall-clock time in milliseconds (`STAGE ... at_ms N`) so that the nvidia-smi samples
//! `scripts/gpu-check.sh` takes can be assigned to stages (peak GPU memory per stage);
//! at the end each stage's steps, seconds and seconds per step are printed.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use candle_core::{DType, Device};
use longcat_api::AppInput;
use longcat_core::{App, RgbImage};
use longcat_model::dit::LongCatDit;
use longcat_model::lora::LoraKind;
use longcat_model::random::device_random_var_builder;
use longcat_model::tokenizer::{PromptTokenizer, DEFAULT_MAX_LENGTH};
use longcat_model::umt5::Umt5Config;
use longcat_model::vae::{VaeConfig, WanVae};
use longcat_pipeline::engine::EngineConfig;
use longcat_pipeline::generator::into_engine;
use longcat_pipeline::networks::Networks;
use longcat_pipeline::text_encoder::{ManagedTextEncoder, TextEncoderPolicy, TextEncoderWeights};
use longcat_pipeline::{
    CancelToken, GenerationError, GenerationRequest, GenerationSink, GenerationSummary,
    PipelineError, Progress, Stage, VideoFrame,
};

use crate::gpu_check::{official_dit_config, random_block_lora};

/// The umT5-xxl encoder config of the official checkpoint (`text_encoder/config.json`).
fn umt5_xxl_config() -> Umt5Config {
    Umt5Config {
        vocab_size: 256_384,
        d_model: 4096,
        d_kv: 64,
        d_ff: 10_240,
        num_layers: 24,
        num_heads: 64,
        relative_attention_num_buckets: 32,
        relative_attention_max_distance: 128,
        layer_norm_epsilon: 1e-6,
        feed_forward_proj: "gated-gelu".into(),
        pad_token_id: 0,
        eos_token_id: 1,
    }
}

/// Every network at its official size, random bf16 weights drawn on `dev`: umT5-xxl (under
/// the default `offload` policy), the Wan VAE, the 48-block DiT and a rank-128 refinement
/// LoRA on every block's linears (the tiny tokenizer stands in for umT5's: the encoder still
/// runs all 512 positions).
fn full_size_networks(dev: &Device) -> Result<Networks> {
    let dtype = DType::BF16;
    let weights = TextEncoderWeights {
        config: umt5_xxl_config(),
        dtype,
        open: Arc::new(move |d: &Device| device_random_var_builder(dtype, d)),
    };
    let text_encoder = ManagedTextEncoder::new(weights, TextEncoderPolicy::default(), dev.clone())?;
    let vae = WanVae::new(&VaeConfig::default(), device_random_var_builder(dtype, dev))?;
    let cfg = official_dit_config()?;
    let mut dit = LongCatDit::random_on_device(cfg.clone(), dev, dtype)?;
    dit.register_lora(
        LoraKind::Refinement.name(),
        random_block_lora(&cfg, 128, dev)?,
    )?;
    Ok(Networks {
        text_encoder,
        tokenizer: PromptTokenizer::builtin_tiny(DEFAULT_MAX_LENGTH)?,
        vae,
        dit,
        config: EngineConfig {
            name: "full-size random networks (gpu-check)".into(),
            ..EngineConfig::default()
        },
    })
}

/// fal's default request for image-to-video/720p (the endpoint's own defaults, from
/// `longcat-api`), on a 1280x720 image, seed 42.
fn default_request() -> GenerationRequest {
    let (w, h) = (1280u32, 720u32);
    let data = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
    let mut input = AppInput::defaults(App::DEFAULT);
    input.seed = Some(42);
    input.to_request(Some(RgbImage {
        width: w,
        height: h,
        data,
    }))
}

/// Milliseconds since the Unix epoch (the clock nvidia-smi's timestamps are read against).
fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// One stage of one segment as the progress reports show it.
struct StageSpan {
    stage: Stage,
    segment: u32,
    started: Instant,
    steps: u32,
    total: u32,
}

/// A sink that prints each stage change with its wall-clock time and counts frames.
struct StageProbe {
    spans: Vec<StageSpan>,
    frames: u32,
    start: Instant,
}

impl StageProbe {
    fn report(&self) {
        let end = Instant::now();
        for (i, s) in self.spans.iter().enumerate() {
            let until = self.spans.get(i + 1).map_or(end, |n| n.started);
            let secs = until.duration_since(s.started).as_secs_f64();
            let per_step = if s.steps > 0 {
                format!("{:.2} s/step", secs / f64::from(s.steps))
            } else {
                "-".into()
            };
            println!(
                "JOB {:?} segment {}: {}/{} steps, {secs:.1} s, {per_step}",
                s.stage,
                s.segment + 1,
                s.steps,
                s.total
            );
        }
        println!(
            "JOB {} frames delivered in {:.1} s",
            self.frames,
            end.duration_since(self.start).as_secs_f64()
        );
    }
}

impl GenerationSink for StageProbe {
    fn progress(&mut self, p: &Progress) {
        let same = self
            .spans
            .last()
            .is_some_and(|s| s.stage == p.stage && s.segment == p.segment);
        if !same {
            println!(
                "STAGE {:?} segment {} at_ms {}",
                p.stage,
                p.segment + 1,
                now_ms()
            );
            let _ = std::io::stdout().flush();
            self.spans.push(StageSpan {
                stage: p.stage,
                segment: p.segment,
                started: Instant::now(),
                steps: 0,
                total: p.total,
            });
        }
        if let Some(s) = self.spans.last_mut() {
            s.steps = s.steps.max(p.step);
            s.total = p.total;
        }
    }

    fn log(&mut self, message: &str) {
        println!("LOG {message}");
    }

    fn frame(&mut self, _frame: VideoFrame) -> Result<(), GenerationError> {
        self.frames += 1;
        Ok(())
    }
}

/// Runs the default job on `dev` for at most `budget` (then cancels at the next step) and
/// prints what each stage took.
pub fn run_job(dev: &Device, budget: Duration) -> Result<()> {
    let built = Instant::now();
    let networks = full_size_networks(dev)?;
    dev.synchronize()?;
    println!(
        "JOB networks: umT5-xxl, Wan VAE, 48-block DiT + rank-128 LoRA, random bf16, built in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let (probe, outcome) = drive(networks, dev, budget);
    probe.report();
    match outcome {
        Ok(summary) => println!(
            "JOB finished: {} frames {}x{}",
            summary.frames, summary.width, summary.height
        ),
        Err(PipelineError::Cancelled) => {
            println!("JOB stopped by the {} s budget", budget.as_secs())
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The default request through an engine over `networks`, cancelled after `budget`.
fn drive(
    networks: Networks,
    dev: &Device,
    budget: Duration,
) -> (StageProbe, Result<GenerationSummary, PipelineError>) {
    let mut engine = into_engine(networks, dev);
    let cancel = CancelToken::new();
    {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(budget);
            cancel.cancel();
        });
    }
    let mut probe = StageProbe {
        spans: Vec::new(),
        frames: 0,
        start: Instant::now(),
    };
    println!("STAGE Load segment 0 at_ms {}", now_ms());
    let outcome = engine.run(&default_request(), &mut probe, &cancel);
    println!("STAGE End segment 0 at_ms {}", now_ms());
    (probe, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness on the tiny model (CPU): every stage of both segments is seen in order
    /// with its steps, and the whole default job's frames arrive.
    #[test]
    fn the_default_job_is_followed_stage_by_stage() {
        let networks = longcat_pipeline::tiny::networks(
            &Device::Cpu,
            DType::F32,
            TextEncoderPolicy::default(),
        )
        .unwrap();
        let (probe, outcome) = drive(networks, &Device::Cpu, Duration::from_secs(3600));
        let summary = outcome.unwrap();
        assert_eq!(summary.frames, 322);
        assert_eq!(probe.frames, 322);
        let seen: Vec<(Stage, u32)> = probe.spans.iter().map(|s| (s.stage, s.segment)).collect();
        for stage in [Stage::Base, Stage::Refine, Stage::Decode] {
            for segment in [0, 1] {
                assert!(
                    seen.contains(&(stage, segment)),
                    "{stage:?} {segment}: {seen:?}"
                );
            }
        }
        let base = probe.spans.iter().find(|s| s.stage == Stage::Base).unwrap();
        assert_eq!((base.steps, base.total), (40, 40));
    }

    #[test]
    fn the_budget_stops_the_job() {
        let networks = longcat_pipeline::tiny::networks(
            &Device::Cpu,
            DType::F32,
            TextEncoderPolicy::default(),
        )
        .unwrap();
        let (_, outcome) = drive(networks, &Device::Cpu, Duration::ZERO);
        assert!(matches!(outcome, Err(PipelineError::Cancelled)));
    }
}
