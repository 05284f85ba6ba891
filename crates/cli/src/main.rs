//! `longcat`: the LongCat-Video image-to-video server and tools.

mod bench;
mod device;
mod generate;
mod goldens;
mod gpu_check;
mod gpu_job;
mod logging;
mod serve;
mod weights_cmd;
mod worker_cmd;

use clap::{Parser, Subcommand};

/// LongCat-Video image-to-video: server, worker, generation and parity tools.
#[derive(Parser)]
#[command(name = "longcat", version, about)]
struct Cli {
    /// Log line format on stderr: `text` or `json` (one object per line, with the span
    /// fields such as `request_id`); see docs/server.md#logs.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "LONGCAT_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The fal-compatible HTTP server with in-process workers (see docs/server.md).
    Serve(Box<serve::ServeArgs>),
    /// Golden-vector parity checks against the official implementation.
    Goldens {
        #[command(subcommand)]
        command: goldens::GoldensCommand,
    },
    /// Generate one video from an image (the endpoint's fields as flags).
    Generate(Box<generate::GenerateArgs>),
    /// Run only workers: jobs from a job database shared with `longcat serve`.
    Worker(Box<worker_cmd::WorkerArgs>),
    /// CPU benchmarks (ratios against a baseline measured in the same run).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// CUDA kernel checks and timings on the GPU (a `cuda` build): see scripts/gpu-check.sh.
    GpuCheck(gpu_check::GpuCheckArgs),
    /// Checkpoint tools: `weights check DIR` validates a checkpoint from its headers.
    Weights {
        #[command(subcommand)]
        command: weights_cmd::WeightsCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Goldens { command } => goldens::run(command),
        Command::Generate(args) => generate::run(*args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Worker(args) => worker_cmd::run(*args),
        Command::Bench { command } => bench::run(command).map(|()| std::process::ExitCode::SUCCESS),
        Command::Weights { command } => weights_cmd::run(command),
        Command::GpuCheck(args) => gpu_check::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(args).unwrap().command
    }

    /// A split deployment (`serve --workers 0` + `worker`, both on their defaults) signs
    /// with the key the server publishes, with the same lease and switches.
    #[test]
    fn serve_and_worker_resolve_the_same_worker_defaults() {
        let Command::Serve(serve) = parse(&["longcat", "serve", "--workers", "0"]) else {
            unreachable!()
        };
        let Command::Worker(worker) = parse(&["longcat", "worker"]) else {
            unreachable!()
        };
        let server = serve::resolve(*serve).unwrap();
        let worker = worker_cmd::settings(&worker).unwrap();
        assert_eq!(
            server.webhook_key_file.as_deref(),
            Some(worker.webhook_key_file.as_path())
        );
        assert_eq!(server.lease, worker.lease);
        assert_eq!(server.database_url, worker.database_url);
        assert_eq!(server.storage, worker.storage);
        assert_eq!(
            server.allow_private_webhooks,
            worker.allow_private_webhook_urls
        );
        assert_eq!(
            server.allow_private_image_urls,
            worker.allow_private_image_urls
        );
        let mut defaults = longcat_worker::WorkerSettings::default();
        if let Some(model) = std::env::var_os("LONGCAT_SAFETY_MODEL") {
            // scripts/test.sh exports the model's absolute path for the system tests.
            defaults.safety.model = model.into();
        }
        assert_eq!(worker, defaults);
    }

    /// Both commands take the same boolean forms, including turning a switch off.
    #[test]
    fn both_commands_take_the_private_webhook_switch() {
        for cmd in ["serve", "worker"] {
            for (arg, want) in [
                ("--allow-private-webhook-urls", true),
                ("--allow-private-webhook-urls=false", false),
            ] {
                let got = match parse(&["longcat", cmd, arg]) {
                    Command::Serve(s) => s.worker_layer().allow_private_webhook_urls,
                    Command::Worker(w) => w.worker.allow_private_webhook_urls,
                    _ => unreachable!(),
                };
                assert_eq!(got, Some(want), "{cmd} {arg}");
            }
        }
    }
}
