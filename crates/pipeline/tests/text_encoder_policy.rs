//! The text encoder policy through the whole engine on the tiny model: what stays on the
//! device after a job's prompts are encoded, and that every policy makes the same video.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use candle_core::{DType, Device};
use longcat_pipeline::generator::into_engine;
use longcat_pipeline::text_encoder::{Residency, TextEncoderPolicy};
use longcat_pipeline::{
    tiny, Acceleration, App, AspectRatio, CancelToken, GenerationError, GenerationRequest,
    GenerationSink, Progress, RgbImage, VideoFrame,
};

#[derive(Default)]
struct HashSink(DefaultHasher);

impl GenerationSink for HashSink {
    fn progress(&mut self, _: &Progress) {}
    fn log(&mut self, _: &str) {}
    fn frame(&mut self, f: VideoFrame) -> Result<(), GenerationError> {
        f.data.hash(&mut self.0);
        Ok(())
    }
}

fn request() -> GenerationRequest {
    let (w, h) = (64u32, 36u32);
    let data = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    GenerationRequest {
        app: App::DEFAULT,
        image: Some(RgbImage {
            width: w,
            height: h,
            data,
        }),
        aspect_ratio: AspectRatio::default(),
        prompt: "A red car drives along a coast road.".into(),
        negative_prompt: "blurry".into(),
        num_frames: 17,
        num_inference_steps: 2,
        num_refine_inference_steps: 4,
        guidance_scale: 4.0,
        seed: 5,
        acceleration: Acceleration::None,
    }
}

#[test]
fn policies_release_the_encoder_after_encoding_and_make_the_same_video() {
    let dev = Device::Cpu;
    let mut hashes = Vec::new();
    for policy in TextEncoderPolicy::ALL {
        let nets = tiny::networks(&dev, DType::F32, policy).unwrap();
        let mut engine = into_engine(nets, &dev);
        let te = engine.text.managed();
        let full = match policy {
            TextEncoderPolicy::Reload => {
                assert_eq!(te.residency(), Residency::Released, "reload holds nothing");
                None
            }
            // Offload on the CPU device moves nothing: it is resident there.
            _ => {
                assert_eq!(te.policy(), TextEncoderPolicy::Resident, "{policy}");
                assert!(te.device_bytes() > 0);
                Some(te.device_bytes())
            }
        };
        // Reload runs twice: the second job re-reads the weights it dropped.
        let runs = if policy == TextEncoderPolicy::Reload {
            2
        } else {
            1
        };
        for _ in 0..runs {
            let mut sink = HashSink::default();
            engine
                .run(&request(), &mut sink, &CancelToken::new())
                .unwrap();
            hashes.push((policy, sink.0.finish()));
            let te = engine.text.managed();
            match full {
                None => {
                    assert_eq!(te.residency(), Residency::Released, "{policy}");
                    assert_eq!(te.device_bytes(), 0, "{policy}: nothing left on the device");
                    assert_eq!(te.host_bytes(), 0, "{policy}: no host copy either");
                }
                Some(bytes) => {
                    assert_eq!(te.residency(), Residency::OnDevice, "{policy}");
                    assert_eq!(te.device_bytes(), bytes, "{policy}");
                }
            }
        }
    }
    let first = hashes[0].1;
    assert!(
        hashes.iter().all(|&(_, h)| h == first),
        "every policy and every repeat makes the same video: {hashes:?}"
    );
}
