//! Frames straight into the FFmpeg encoder (never all in memory) and progress on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use longcat_core::{GenerationError, GenerationSink, Progress, Stage, VideoFrame};
use longcat_media::{EncodeError, EncodedVideo, EncoderConfig, VideoEncoder, VideoOptions};
use longcat_worker::safety::OutputCheck;

/// A [`GenerationSink`] that starts the encoder at the first frame (its size is only known
/// then) and pushes every frame as it arrives, showing sampled frames to the safety
/// checker's output check when there is one.
pub struct EncodingSink {
    config: EncoderConfig,
    options: VideoOptions,
    encoder: Option<VideoEncoder>,
    progress: ProgressLine,
    output_check: Option<OutputCheck>,
}

impl EncodingSink {
    /// A sink writing with `options`.
    pub fn new(config: EncoderConfig, options: VideoOptions) -> Self {
        Self {
            config,
            options,
            encoder: None,
            progress: ProgressLine::new(),
            output_check: None,
        }
    }

    /// Shows every frame to `check` (which samples them) as it is encoded.
    pub fn check_output(&mut self, check: OutputCheck) {
        self.output_check = Some(check);
    }

    /// The output check, to be finished once the last frame is in.
    pub fn take_output_check(&mut self) -> Option<OutputCheck> {
        self.output_check.take()
    }

    /// Ends the progress line (call before printing anything else).
    pub fn finish_progress(&mut self) {
        self.progress.end();
    }

    /// Closes the encoder and returns the file.
    pub fn finish(mut self) -> Result<EncodedVideo, EncodeError> {
        match self.encoder.take() {
            Some(encoder) => encoder.finish(),
            None => Err(EncodeError::NoFrames),
        }
    }
}

impl GenerationSink for EncodingSink {
    fn progress(&mut self, progress: &Progress) {
        let frames = self.encoder.as_ref().map_or(0, VideoEncoder::frames_pushed);
        self.progress.update(progress, frames);
    }

    fn log(&mut self, message: &str) {
        self.progress.message(message);
    }

    fn frame(&mut self, frame: VideoFrame) -> Result<(), GenerationError> {
        let sink_err = |e: EncodeError| GenerationError::Sink(e.to_string());
        if let Some(check) = &mut self.output_check {
            check.offer(&frame);
        }
        if self.encoder.is_none() {
            let encoder = VideoEncoder::new(&self.config, &self.options, frame.width, frame.height)
                .map_err(sink_err)?;
            self.encoder = Some(encoder);
        }
        match self.encoder.as_mut() {
            Some(encoder) => encoder.push_frame(&frame.data).map_err(sink_err),
            None => Err(GenerationError::Sink("encoder not started".into())),
        }
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::EncodeText => "encode text",
        Stage::EncodeImage => "encode image",
        Stage::Base => "stage 1 (480p/15fps)",
        Stage::Refine => "refine (720p/30fps)",
        Stage::Decode => "decode",
    }
}

fn format_eta(eta: Option<Duration>) -> String {
    match eta {
        None => "--".into(),
        Some(d) => {
            let s = d.as_secs();
            if s >= 3600 {
                format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
            } else if s >= 60 {
                format!("{}m{:02}s", s / 60, s % 60)
            } else {
                format!("{s}s")
            }
        }
    }
}

/// One status line: rewritten in place on a terminal, one line per update otherwise
/// (at most one per second for the same stage, plus every stage change).
struct ProgressLine {
    tty: bool,
    open: bool,
    start: Instant,
    last: Option<(Stage, u32, Instant)>,
}

impl ProgressLine {
    fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            open: false,
            start: Instant::now(),
            last: None,
        }
    }

    fn update(&mut self, p: &Progress, frames: u32) {
        let line = format!(
            "[{:>6.1}s] segment {}/{} {}: step {}/{} | {} frames encoded | ETA {}",
            self.start.elapsed().as_secs_f64(),
            p.segment + 1,
            p.segments,
            stage_name(p.stage),
            p.step,
            p.total,
            frames,
            format_eta(p.eta),
        );
        let now = Instant::now();
        let changed = self
            .last
            .is_none_or(|(s, seg, _)| s != p.stage || seg != p.segment);
        let due = self
            .last
            .is_none_or(|(_, _, t)| now.duration_since(t) >= Duration::from_secs(1));
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            self.open = true;
        } else if changed || due || p.step == p.total {
            let _ = writeln!(err, "{line}");
        } else {
            return;
        }
        self.last = Some((p.stage, p.segment, now));
    }

    fn message(&mut self, message: &str) {
        self.end();
        eprintln!("{message}");
    }

    fn end(&mut self) {
        if self.open {
            eprintln!();
            self.open = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_formats() {
        assert_eq!(format_eta(None), "--");
        assert_eq!(format_eta(Some(Duration::from_secs(42))), "42s");
        assert_eq!(format_eta(Some(Duration::from_secs(125))), "2m05s");
        assert_eq!(format_eta(Some(Duration::from_secs(3725))), "1h02m");
    }
}
