//! The endpoint's video output choices (`video_output_type`, `video_quality`,
//! `video_write_mode`), each with its one table of wire names (see [`crate::wire`]).
//! `longcat-media` turns them into encoder settings.

use crate::wire::wire_enum;

wire_enum! {
    /// `video_output_type`: container and codec of the output file.
    pub enum VideoOutputType {
        /// H.264 (libx264, yuv420p) in MP4 with the index at the front (faststart).
        #[default]
        X264Mp4 = "X264 (.mp4)",
        /// VP9 (libvpx-vp9, yuv420p) in WebM.
        Vp9Webm = "VP9 (.webm)",
        /// ProRes 4444 (prores_ks, yuva444p10le) in QuickTime.
        Prores4444Mov = "PRORES4444 (.mov)",
        /// Animated GIF (palette from the first frame, ordered dithering).
        Gif = "GIF (.gif)",
    }
}

impl VideoOutputType {
    /// MIME type of the output file.
    pub fn content_type(self) -> &'static str {
        match self {
            VideoOutputType::X264Mp4 => "video/mp4",
            VideoOutputType::Vp9Webm => "video/webm",
            VideoOutputType::Prores4444Mov => "video/quicktime",
            VideoOutputType::Gif => "image/gif",
        }
    }

    /// File name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            VideoOutputType::X264Mp4 => "mp4",
            VideoOutputType::Vp9Webm => "webm",
            VideoOutputType::Prores4444Mov => "mov",
            VideoOutputType::Gif => "gif",
        }
    }
}

wire_enum! {
    /// `video_quality`: how much detail the encoder keeps (maps to CRF / quantiser / palette
    /// size). [`VideoQuality::ALL`] is lowest first.
    pub enum VideoQuality {
        /// Smallest files, visible artefacts.
        Low = "low",
        /// Everyday quality.
        Medium = "medium",
        /// The endpoint's default: visually clean.
        #[default]
        High = "high",
        /// Near-transparent quality, large files.
        Maximum = "maximum",
    }
}

wire_enum! {
    /// `video_write_mode`: encoder speed versus file size. [`VideoWriteMode::ALL`] is fastest
    /// first.
    pub enum VideoWriteMode {
        /// Fastest encoding, larger files.
        Fast = "fast",
        /// The endpoint's default.
        #[default]
        Balanced = "balanced",
        /// Slower encoding, smaller files.
        Small = "small",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Acceleration;

    /// Each value's name parses back to it, serde writes and reads the same name, and an
    /// unknown name is refused with the list of names.
    fn round_trips<T>(all: &[T], names: &[&str], name_of: fn(T) -> &'static str)
    where
        T: Copy
            + PartialEq
            + std::fmt::Debug
            + std::fmt::Display
            + std::str::FromStr<Err = crate::wire::UnknownWireName>
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        assert_eq!(all.len(), names.len());
        for (&v, &name) in all.iter().zip(names) {
            assert_eq!(name_of(v), name);
            assert_eq!(v.to_string(), name);
            assert_eq!(name.parse::<T>(), Ok(v));
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(name));
            assert_eq!(
                serde_json::from_value::<T>(serde_json::json!(name)).unwrap(),
                v
            );
        }
        let err = "nope".parse::<T>().unwrap_err();
        assert_eq!(err.expected, names);
        let err = serde_json::from_value::<T>(serde_json::json!("nope")).unwrap_err();
        assert!(err.to_string().contains("unknown variant `nope`"), "{err}");
    }

    #[test]
    fn wire_names_round_trip() {
        round_trips(
            &VideoOutputType::ALL,
            &[
                "X264 (.mp4)",
                "VP9 (.webm)",
                "PRORES4444 (.mov)",
                "GIF (.gif)",
            ],
            VideoOutputType::wire_name,
        );
        round_trips(
            &VideoQuality::ALL,
            &["low", "medium", "high", "maximum"],
            VideoQuality::wire_name,
        );
        round_trips(
            &VideoWriteMode::ALL,
            &["fast", "balanced", "small"],
            VideoWriteMode::wire_name,
        );
        round_trips(
            &Acceleration::ALL,
            &["none", "regular"],
            Acceleration::wire_name,
        );
    }

    #[test]
    fn defaults_are_the_endpoints() {
        assert_eq!(VideoOutputType::default(), VideoOutputType::X264Mp4);
        assert_eq!(VideoQuality::default(), VideoQuality::High);
        assert_eq!(VideoWriteMode::default(), VideoWriteMode::Balanced);
        assert_eq!(Acceleration::default(), Acceleration::Regular);
    }
}
