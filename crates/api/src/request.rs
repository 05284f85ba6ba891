//! From the wire input to the pipeline's [`GenerationRequest`].

use longcat_core::{AspectRatio, GenerationRequest, RgbImage};

use crate::input::AppInput;

/// Largest seed we pick at random (fal's seeds are 32-bit).
pub const MAX_RANDOM_SEED: u64 = u32::MAX as u64;

/// A fresh random seed in `0..=MAX_RANDOM_SEED`.
pub fn random_seed() -> u64 {
    u64::from(rand::random::<u32>())
}

impl AppInput {
    /// The seed this input asks for, or a fresh random one.
    pub fn resolve_seed(&self) -> u64 {
        self.seed.unwrap_or_else(random_seed)
    }

    /// The pipeline request for this input and the decoded condition image (dropped for
    /// a text-to-video app). See [`AppInput::to_request`].
    pub fn to_generation_request(&self, image: RgbImage) -> GenerationRequest {
        self.to_request(Some(image))
    }

    /// The pipeline request for this input: its app, the condition image (`Some` only for
    /// an image-to-video app; `image` is ignored otherwise), and `aspect_ratio` (its
    /// default for image-to-video, which takes the image's shape). Fields the app does not
    /// have get the app's meaning: a distilled app runs without CFG (`guidance_scale` 1).
    /// A missing seed is resolved to a random one; read it back from
    /// `GenerationRequest::seed` for the output.
    pub fn to_request(&self, image: Option<RgbImage>) -> GenerationRequest {
        let app = self.app;
        GenerationRequest {
            app,
            image: if app.takes_image() { image } else { None },
            aspect_ratio: if app.takes_image() {
                AspectRatio::default()
            } else {
                self.aspect_ratio
            },
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            num_frames: self.num_frames,
            num_inference_steps: self.num_inference_steps,
            num_refine_inference_steps: self.num_refine_inference_steps,
            guidance_scale: if app.distilled {
                1.0
            } else {
                self.guidance_scale as f32
            },
            seed: self.resolve_seed(),
            acceleration: self.acceleration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_value_for;
    use longcat_core::Acceleration;
    use longcat_core::App;
    use serde_json::json;

    fn image() -> RgbImage {
        RgbImage {
            width: 2,
            height: 1,
            data: vec![0; 6],
        }
    }

    #[test]
    fn maps_every_field() {
        let mut input = AppInput::new("https://example.com/a.png");
        input.prompt = "p".into();
        input.negative_prompt = "n".into();
        input.num_frames = 33;
        input.num_inference_steps = 9;
        input.num_refine_inference_steps = 12;
        input.guidance_scale = 2.5;
        input.seed = Some(77);
        input.acceleration = Acceleration::None;
        let r = input.to_generation_request(image());
        assert_eq!(r.prompt, "p");
        assert_eq!(r.negative_prompt, "n");
        assert_eq!(r.num_frames, 33);
        assert_eq!(r.num_inference_steps, 9);
        assert_eq!(r.num_refine_inference_steps, 12);
        assert_eq!(r.guidance_scale, 2.5);
        assert_eq!(r.seed, 77);
        assert_eq!(r.acceleration, Acceleration::None);
        assert_eq!(r.image.map(|i| i.width), Some(2));
        assert_eq!(r.app, App::DEFAULT);
    }

    #[test]
    fn missing_seed_is_random_and_in_range() {
        let input = AppInput::new("https://example.com/a.png");
        let seeds: Vec<u64> = (0..8)
            .map(|_| input.to_generation_request(image()).seed)
            .collect();
        assert!(seeds.iter().all(|s| *s <= MAX_RANDOM_SEED));
        // Eight 32-bit draws are all equal with probability 2^-224.
        assert!(seeds.iter().any(|s| *s != seeds[0]));
    }

    #[test]
    fn each_app_fills_app_image_and_aspect_ratio() {
        for app in App::ALL {
            let body = if app.takes_image() {
                json!({"image_url": "https://example.com/a.png", "aspect_ratio": "1:1", "guidance_scale": 2})
            } else {
                json!({"prompt": "a cat", "aspect_ratio": "9:16", "guidance_scale": 2})
            };
            let input = parse_value_for(app, &body).unwrap();
            let r = input.to_request(Some(image()));
            assert_eq!(r.app, app);
            assert_eq!(r.image.is_some(), app.takes_image(), "{app}");
            let want_ratio = if app.takes_image() {
                AspectRatio::Landscape
            } else {
                AspectRatio::Portrait
            };
            assert_eq!(r.aspect_ratio, want_ratio, "{app}");
            assert_eq!(
                r.guidance_scale,
                if app.distilled { 1.0 } else { 2.0 },
                "{app}"
            );
            let l = longcat_core::limits::for_app(app);
            assert_eq!(r.num_inference_steps, l.default_num_inference_steps);
            // The compatibility entry point drops the image for text-to-video too.
            assert_eq!(
                input.to_generation_request(image()).image.is_some(),
                app.takes_image()
            );
        }
    }
}
