//! `longcat generate`: one request to any of the LongCat-Video apps (`--app`, default
//! image-to-video/720p) from the command line, through the same generator and encoder the
//! server uses.

mod image;
mod input;
mod safety;
mod sink;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use longcat_core::RgbImage;
use longcat_media::{EncoderConfig, VideoOptions};
use longcat_model::vae::VaeTiling;
use longcat_pipeline::generator::{load_generator, GeneratorOptions};
use longcat_pipeline::text_encoder::TextEncoderPolicy;
use longcat_pipeline::CancelToken;
use longcat_worker::prompt_expansion::{expand_or_keep_for, Expanded};
use longcat_worker::safety::{OutputCheck, SafetyLayer};
use longcat_worker::PromptExpansionLayer;

use input::{parse_app, parse_for_app, request_body, RequestFlags};
use sink::EncodingSink;

/// Arguments of `longcat generate`: the endpoint's JSON fields as flags, plus where the
/// weights are and where the video goes.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The app: `fal-ai/longcat-video/{text-to-video,image-to-video}/{480p,720p}` or
    /// `fal-ai/longcat-video/distilled/...`, or the part after `fal-ai/longcat-video/`.
    #[arg(long, value_name = "ID", default_value = longcat_core::App::DEFAULT.id(), value_parser = parse_app)]
    app: longcat_core::App,
    #[command(flatten)]
    flags: RequestFlags,
    /// A file holding exactly the endpoint's JSON request body (flags override its fields).
    #[arg(long, value_name = "FILE")]
    input_json: Option<PathBuf>,
    /// Where to write the video (default: `longcat-<seed>.<ext>`).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Official checkpoint directory; without it the built-in tiny random model runs
    /// (its output is noise).
    #[arg(long, value_name = "DIR", env = "LONGCAT_WEIGHTS")]
    weights: Option<PathBuf>,
    /// Where the model runs.
    #[arg(long, env = "LONGCAT_DEVICE", default_value = "auto", long_help = crate::device::DEVICE_HELP)]
    device: String,
    /// Where the text encoder stays after the prompts are encoded: resident, offload or reload.
    #[arg(long, env = "LONGCAT_TEXT_ENCODER", default_value = "offload", value_name = "POLICY", value_parser = crate::device::parse_text_encoder, long_help = crate::device::TEXT_ENCODER_HELP)]
    text_encoder: TextEncoderPolicy,
    /// Spatial tiling of the VAE, TILE[,OVERLAP] in latent pixels [default: off].
    #[arg(long, env = "LONGCAT_VAE_TILING", value_name = "TILE[,OVERLAP]", long_help = crate::device::VAE_TILING_HELP)]
    vae_tiling: Option<VaeTiling>,
    /// Where `--enable-prompt-expansion` sends the prompt (the server's flags; key from
    /// LONGCAT_PROMPT_EXPANSION_KEY).
    #[command(flatten)]
    prompt_expansion: PromptExpansionLayer,
    /// The safety checker of `enable_safety_checker` (the server's flags).
    #[command(flatten)]
    safety: SafetyLayer,
}

/// Runs `longcat generate`.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let body = request_body(args.input_json.as_deref(), &args.flags)?;
    let mut parsed = parse_for_app(args.app, &body)?;
    let image = if args.app.takes_image() {
        Some(image::load(&parsed.image_url)?)
    } else {
        None
    };
    let checker = safety::checker(&args.safety, parsed.enable_safety_checker)?;
    if let (Some(checker), Some(image)) = (&checker, &image) {
        safety::check_input(checker, image, &parsed.image_url)?;
    }
    if parsed.enable_prompt_expansion {
        parsed.prompt = expand_prompt(&args.prompt_expansion, &parsed.prompt, image.as_ref())?;
    }
    let request = parsed.to_request(image);
    let options = VideoOptions {
        output_type: parsed.video_output_type,
        quality: parsed.video_quality,
        write_mode: parsed.video_write_mode,
        fps: parsed.fps,
    };
    options.validate()?;
    let output = args.output.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "longcat-{}.{}",
            request.seed,
            options.output_type.extension()
        ))
    });
    for note in input::ignored_notes(&parsed) {
        eprintln!("note: {note}");
    }

    let device = crate::device::parse_device(&args.device)?;
    let load_started = Instant::now();
    let generator = load_generator(&GeneratorOptions {
        weights_dir: args.weights.clone(),
        device,
        dtype: None,
        text_encoder: args.text_encoder,
        vae_tiling: args.vae_tiling,
    })?;
    let info = generator.info();
    if info.smoke_test_model {
        eprintln!(
            "WARNING: no --weights / LONGCAT_WEIGHTS given: running the {}",
            info.name
        );
    }
    eprintln!(
        "model: {} (loaded in {:.1} s)",
        info.name,
        load_started.elapsed().as_secs_f64()
    );

    let mut sink = EncodingSink::new(EncoderConfig::default(), options);
    if let Some(checker) = &checker {
        let check = OutputCheck::start(checker.clone(), f64::from(options.fps))
            .context("cannot start the safety check of the output")?;
        sink.check_output(check);
    }
    let cancel = CancelToken::new();
    cancel_on_ctrl_c(cancel.clone());
    let gen_started = Instant::now();
    let summary = generator.generate(&request, &mut sink, &cancel);
    sink.finish_progress();
    let summary = summary.context("generation failed")?;
    let gen_secs = gen_started.elapsed().as_secs_f64();
    let output_check = sink.take_output_check();
    let mut video = sink.finish().context("encoding failed")?;
    if let Some(check) = output_check {
        let verdict = check
            .finish()
            .map_err(|e| anyhow::anyhow!("safety check of the output failed: {e}"))?;
        // A flagged video is dropped here (its temporary file with it), never written.
        safety::check_output(&verdict)?;
        eprintln!(
            "safety checker: {} output frames checked, none flagged",
            verdict.checked.len()
        );
    }
    video
        .persist(&output)
        .with_context(|| format!("cannot write {}", output.display()))?;

    let url = url_for(&output);
    let result = serde_json::json!({
        "video": video.to_file(url),
        "seed": summary.seed,
        "prompt": request.prompt,
    });
    eprintln!(
        "done: {} frames {}x{} at {} fps ({:.2} s of video), seed {}, {} bytes -> {}",
        video.frames,
        video.width,
        video.height,
        video.fps,
        video.frames as f64 / video.fps as f64,
        summary.seed,
        video.file_size,
        output.display()
    );
    eprintln!(
        "time: generation {:.1} s, total {:.1} s",
        gen_secs,
        started.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// The prompt `--enable-prompt-expansion` gives: the endpoint's rewrite, or the prompt as
/// given with a warning on stderr (not configured, or failed with policy `original`).
fn expand_prompt(
    layer: &PromptExpansionLayer,
    prompt: &str,
    image: Option<&RgbImage>,
) -> anyhow::Result<String> {
    let mut config = PromptExpansionLayer::resolve(layer, &PromptExpansionLayer::default())?;
    if let Some(config) = &mut config {
        config.api_key = PromptExpansionLayer::key_from_env();
        eprintln!("expanding the prompt with {}", config.model);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("prompt expansion runtime")?;
    match runtime.block_on(expand_or_keep_for(config.as_ref(), prompt, image)) {
        Ok(Expanded::Rewritten(text)) => {
            eprintln!("prompt expanded: {text}");
            Ok(text)
        }
        Ok(Expanded::Kept { prompt, warning }) => {
            eprintln!("warning: {warning}");
            Ok(prompt)
        }
        Err(e) => Err(anyhow::anyhow!("prompt expansion failed: {e}")),
    }
}

/// Trips `cancel` on the first Ctrl-C (the generation stops after the current denoising step);
/// a second Ctrl-C exits at once. Returns once the handler is in place, so a Ctrl-C right
/// after the first progress line is not lost to the default handler. (Unix: SIGINT.)
fn cancel_on_ctrl_c(cancel: CancelToken) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut interrupts) = signal(SignalKind::interrupt()) else {
                return;
            };
            let _ = ready_tx.send(());
            if interrupts.recv().await.is_some() {
                eprintln!(
                    "\ninterrupted: stopping after the current step (Ctrl-C again to quit now)"
                );
                cancel.cancel();
            }
            if interrupts.recv().await.is_some() {
                std::process::exit(130);
            }
        });
    });
    // If the handler could not be installed, the default one stays (Ctrl-C quits).
    let _ = ready_rx.recv_timeout(std::time::Duration::from_secs(5));
}

/// `file://` URL of the written video (absolute when the path can be resolved).
fn url_for(path: &std::path::Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("file://{}", abs.display())
}
