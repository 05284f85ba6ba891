//! The engine end to end with small stand-in networks: segment planning, frame streaming,
//! progress, cancellation and seed reproducibility.

use candle_core::{DType, Device, Tensor};
use longcat_pipeline::buckets;
use longcat_pipeline::components::{
    Denoiser, DenoiserMode, LatentCodec, Posterior, PromptEncoder, Result, TextConditioning,
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

#[derive(Default)]
struct Dit {
    modes: Vec<DenoiserMode>,
}
impl Denoiser for Dit {
    type KvCache = Tensor;
    fn set_mode(&mut self, mode: DenoiserMode) -> Result<()> {
        self.modes.push(mode);
        Ok(())
    }
    fn forward(
        &self,
        x: &Tensor,
        t: &Tensor,
        text: &TextConditioning,
        _n: usize,
    ) -> Result<Tensor> {
        let (b, _, f, _, _) = x.dims5()?;
        let tt = (t.reshape((b, 1, f, 1, 1))? * 1e-3)?;
        let txt = text.embeds.mean_all()?.to_scalar::<f32>()? as f64;
        Ok(((x * 0.9)?.broadcast_add(&tt)? + txt)?)
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
        Ok(self.forward(x, t, text, 0)?.broadcast_add(cache)?)
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
