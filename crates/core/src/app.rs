//! The LongCat-Video apps a server offers, as fal names them: text-to-video or
//! image-to-video, 480p (stage 1 only, 15 fps) or 720p (refined, 30 fps), base or distilled.
//! One checkpoint serves all of them; the app decides the stage plan.

use crate::wire::wire_enum;

wire_enum! {
    /// `aspect_ratio` of the text-to-video apps (the frame shape; image-to-video takes the
    /// image's).
    pub enum AspectRatio {
        /// Landscape, the endpoint's default.
        #[default]
        Landscape = "16:9",
        /// Portrait.
        Portrait = "9:16",
        /// Square.
        Square = "1:1",
    }
}

/// What the video starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// From pure noise and the prompt (no `image_url`; `aspect_ratio` picks the shape).
    TextToVideo,
    /// From a condition image (`image_url`) and the prompt.
    ImageToVideo,
}

/// The output resolution class, which decides whether the refinement stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// Stage 1 only: 480p frames at 15 fps.
    P480,
    /// Stage 1, then refinement to 720p at 30 fps.
    P720,
}

/// One LongCat-Video app (endpoint id `fal-ai/longcat-video/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct App {
    /// Text- or image-to-video.
    pub task: Task,
    /// 480p or 720p.
    pub resolution: Resolution,
    /// The distilled variant: stage 1 with the cfg_step LoRA and its own step range, no CFG.
    pub distilled: bool,
}

/// The prefix every app id shares.
pub const APP_PREFIX: &str = "fal-ai/longcat-video";

impl App {
    /// The app this server has always served (and the default of `longcat generate`).
    pub const DEFAULT: App = App {
        task: Task::ImageToVideo,
        resolution: Resolution::P720,
        distilled: false,
    };

    /// Every app, in a fixed order: base then distilled; text- then image-to-video; 480p
    /// then 720p.
    pub const ALL: [App; 8] = {
        let mut all = [Self::DEFAULT; 8];
        let mut i = 0;
        while i < 8 {
            all[i] = App {
                distilled: i >= 4,
                task: if i % 4 < 2 {
                    Task::TextToVideo
                } else {
                    Task::ImageToVideo
                },
                resolution: if i % 2 == 0 {
                    Resolution::P480
                } else {
                    Resolution::P720
                },
            };
            i += 1;
        }
        all
    };

    /// The endpoint id, e.g. `fal-ai/longcat-video/distilled/text-to-video/480p`.
    pub const fn id(self) -> &'static str {
        match (self.distilled, self.task, self.resolution) {
            (false, Task::TextToVideo, Resolution::P480) => {
                "fal-ai/longcat-video/text-to-video/480p"
            }
            (false, Task::TextToVideo, Resolution::P720) => {
                "fal-ai/longcat-video/text-to-video/720p"
            }
            (false, Task::ImageToVideo, Resolution::P480) => {
                "fal-ai/longcat-video/image-to-video/480p"
            }
            (false, Task::ImageToVideo, Resolution::P720) => {
                "fal-ai/longcat-video/image-to-video/720p"
            }
            (true, Task::TextToVideo, Resolution::P480) => {
                "fal-ai/longcat-video/distilled/text-to-video/480p"
            }
            (true, Task::TextToVideo, Resolution::P720) => {
                "fal-ai/longcat-video/distilled/text-to-video/720p"
            }
            (true, Task::ImageToVideo, Resolution::P480) => {
                "fal-ai/longcat-video/distilled/image-to-video/480p"
            }
            (true, Task::ImageToVideo, Resolution::P720) => {
                "fal-ai/longcat-video/distilled/image-to-video/720p"
            }
        }
    }

    /// The app with endpoint id `id` (exactly as [`App::id`] writes it).
    pub fn from_id(id: &str) -> Option<App> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }

    /// The id without [`APP_PREFIX`] and its slash, e.g. `distilled/text-to-video/480p`.
    pub fn path(self) -> &'static str {
        &self.id()[APP_PREFIX.len() + 1..]
    }

    /// Whether the app takes a condition image (`image_url`).
    pub const fn takes_image(self) -> bool {
        matches!(self.task, Task::ImageToVideo)
    }

    /// Whether the refinement stage runs (720p apps).
    pub const fn refines(self) -> bool {
        matches!(self.resolution, Resolution::P720)
    }

    /// The frame rate the model's frames have: 30 after refinement, 15 from stage 1.
    pub const fn native_fps(self) -> u32 {
        if self.refines() {
            30
        } else {
            15
        }
    }
}

impl Default for App {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::fmt::Display for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_distinct_ids_that_parse_back() {
        let ids: std::collections::HashSet<_> = App::ALL.iter().map(|a| a.id()).collect();
        assert_eq!(ids.len(), 8);
        for app in App::ALL {
            assert_eq!(App::from_id(app.id()), Some(app));
            assert!(app.id().starts_with(APP_PREFIX));
            assert_eq!(format!("{APP_PREFIX}/{}", app.path()), app.id());
        }
        assert_eq!(App::from_id("fal-ai/longcat-video/image-to-video"), None);
        assert_eq!(
            App::DEFAULT.id(),
            "fal-ai/longcat-video/image-to-video/720p"
        );
    }

    #[test]
    fn stage_rules_follow_the_id() {
        for app in App::ALL {
            assert_eq!(app.takes_image(), app.id().contains("image-to-video"));
            assert_eq!(app.refines(), app.id().ends_with("/720p"));
            assert_eq!(app.distilled, app.id().contains("/distilled/"));
            assert_eq!(app.native_fps(), if app.refines() { 30 } else { 15 });
        }
    }

    #[test]
    fn aspect_ratio_wire_names() {
        assert_eq!(AspectRatio::WIRE_NAMES, ["16:9", "9:16", "1:1"]);
        assert_eq!(AspectRatio::default(), AspectRatio::Landscape);
        assert_eq!("1:1".parse::<AspectRatio>(), Ok(AspectRatio::Square));
    }
}
