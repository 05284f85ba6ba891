//! Streaming video encoder: raw RGB24 frames are piped into an `ffmpeg` child process as
//! they arrive, so memory stays bounded by the pipe and FFmpeg's own look-ahead.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use super::file::EncodedVideo;
use super::options::VideoOptions;
use super::settings::{ffmpeg_args, output_dimensions};
use super::temp_file::TempFile;
use super::EncodeError;

/// How much of FFmpeg's stderr is kept for error messages.
const STDERR_KEEP: usize = 16 * 1024;

/// Where FFmpeg lives and where scratch files go.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// The `ffmpeg` program (a name looked up in `PATH`, or a path).
    pub ffmpeg: PathBuf,
    /// Directory for the output files while they are written.
    pub work_dir: PathBuf,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            ffmpeg: PathBuf::from("ffmpeg"),
            work_dir: std::env::temp_dir(),
        }
    }
}

/// Encoders the output types need, as FFmpeg names them.
pub const REQUIRED_ENCODERS: [&str; 4] = ["libx264", "libvpx-vp9", "prores_ks", "gif"];

impl EncoderConfig {
    /// Checks that the configured `ffmpeg` runs and has every encoder in
    /// [`REQUIRED_ENCODERS`]; returns its version line (for start-up logs / health checks).
    pub fn check(&self) -> Result<String, EncodeError> {
        let spawn_err = |source| EncodeError::Spawn {
            program: self.ffmpeg.display().to_string(),
            source,
        };
        let version = Command::new(&self.ffmpeg)
            .args(["-hide_banner", "-version"])
            .output()
            .map_err(spawn_err)?;
        let encoders = Command::new(&self.ffmpeg)
            .args(["-hide_banner", "-encoders"])
            .output()
            .map_err(spawn_err)?;
        if !version.status.success() || !encoders.status.success() {
            return Err(ffmpeg_error(
                encoders.status,
                String::from_utf8_lossy(&encoders.stderr).into_owned(),
            ));
        }
        let listed = String::from_utf8_lossy(&encoders.stdout);
        let names: Vec<&str> = listed
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        let missing: Vec<&str> = REQUIRED_ENCODERS
            .iter()
            .copied()
            .filter(|e| !names.contains(e))
            .collect();
        if !missing.is_empty() {
            return Err(EncodeError::MissingEncoders(missing.join(", ")));
        }
        let text = String::from_utf8_lossy(&version.stdout);
        Ok(text.lines().next().unwrap_or("ffmpeg").trim().to_string())
    }
}

/// Encodes a stream of RGB24 frames into one video file.
///
/// Call [`VideoEncoder::push_frame`] for every frame in order, then [`VideoEncoder::finish`].
/// Dropping the encoder without finishing kills FFmpeg and deletes the partial file.
pub struct VideoEncoder {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    output: Option<TempFile>,
    options: VideoOptions,
    width: u32,
    height: u32,
    frame_len: usize,
    frames: u32,
}

impl VideoEncoder {
    /// Starts FFmpeg for frames of `width`×`height` pixels.
    pub fn new(
        config: &EncoderConfig,
        options: &VideoOptions,
        width: u32,
        height: u32,
    ) -> Result<Self, EncodeError> {
        options.validate()?;
        let (out_w, out_h) = output_dimensions(options.output_type, width, height);
        if out_w == 0 || out_h == 0 || width > 16384 || height > 16384 {
            return Err(EncodeError::InvalidDimensions { width, height });
        }
        let frame_len = width as usize * height as usize * 3;
        let output = TempFile::create(&config.work_dir, options.output_type.extension())
            .map_err(EncodeError::Io)?;
        let args = ffmpeg_args(options, width, height, "pipe:0", output.path());
        tracing::debug!(program = %config.ffmpeg.display(), ?args, "starting ffmpeg");
        let mut child = Command::new(&config.ffmpeg)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| EncodeError::Spawn {
                program: config.ffmpeg.display().to_string(),
                source,
            })?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().map(spawn_stderr_reader);
        Ok(Self {
            child,
            stdin,
            stderr,
            output: Some(output),
            options: *options,
            width,
            height,
            frame_len,
            frames: 0,
        })
    }

    /// Frames pushed so far.
    pub fn frames_pushed(&self) -> u32 {
        self.frames
    }

    /// Sends one frame: `width * height * 3` bytes of RGB24, row-major.
    /// Blocks while FFmpeg is busy (this is the back-pressure that bounds memory).
    pub fn push_frame(&mut self, rgb: &[u8]) -> Result<(), EncodeError> {
        if rgb.len() != self.frame_len {
            return Err(EncodeError::InvalidFrame {
                expected: self.frame_len,
                got: rgb.len(),
            });
        }
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(EncodeError::Io(io::Error::other("encoder already failed")));
        };
        if let Err(e) = stdin.write_all(rgb) {
            // FFmpeg went away: report what it said rather than the broken pipe.
            self.stdin = None;
            self.output = None;
            let status = self.child.wait().map_err(EncodeError::Io)?;
            let message = self.take_stderr();
            if status.success() || message.is_empty() {
                return Err(EncodeError::Io(e));
            }
            return Err(ffmpeg_error(status, message));
        }
        self.frames += 1;
        Ok(())
    }

    /// Closes the input, waits for FFmpeg and returns the finished file.
    pub fn finish(mut self) -> Result<EncodedVideo, EncodeError> {
        if self.frames == 0 {
            return Err(EncodeError::NoFrames);
        }
        drop(self.stdin.take());
        let status = self.child.wait().map_err(EncodeError::Io)?;
        let message = self.take_stderr();
        if !status.success() {
            return Err(ffmpeg_error(status, message));
        }
        if !message.trim().is_empty() {
            tracing::warn!(ffmpeg = %message.trim(), "ffmpeg reported problems");
        }
        let file = self
            .output
            .take()
            .ok_or_else(|| EncodeError::Io(io::Error::other("output file missing")))?;
        let file_size = std::fs::metadata(file.path())
            .map_err(EncodeError::Io)?
            .len();
        if file_size == 0 {
            return Err(EncodeError::Ffmpeg {
                status: "exit 0".into(),
                message: "ffmpeg wrote an empty file".into(),
            });
        }
        let output_type = self.options.output_type;
        let (width, height) = output_dimensions(output_type, self.width, self.height);
        Ok(EncodedVideo {
            file,
            output_type,
            content_type: output_type.content_type(),
            file_name: format!("output.{}", output_type.extension()),
            file_size,
            width,
            height,
            frames: self.frames,
            fps: self.options.fps,
        })
    }

    fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for VideoEncoder {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}

fn ffmpeg_error(status: ExitStatus, message: String) -> EncodeError {
    let message = message.trim();
    EncodeError::Ffmpeg {
        status: status.to_string(),
        message: if message.is_empty() {
            "ffmpeg failed without a message".into()
        } else {
            message.to_string()
        },
    }
}

/// Drains stderr on its own thread (so FFmpeg never blocks on a full pipe), keeping the tail.
fn spawn_stderr_reader(mut stderr: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * STDERR_KEEP {
                        kept.drain(..kept.len() - STDERR_KEEP);
                    }
                }
            }
        }
        if kept.len() > STDERR_KEEP {
            kept.drain(..kept.len() - STDERR_KEEP);
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}
