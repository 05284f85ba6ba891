//! `longcat goldens check DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

/// Subcommands of `longcat goldens`.
#[derive(Subcommand)]
pub enum GoldensCommand {
    /// Check every golden file in DIR; prints one line per output tensor and a final
    /// `N passed, N failed` line; exits non-zero on any failure.
    Check {
        /// Directory holding `*.safetensors` goldens with their `*.json` sidecars.
        dir: PathBuf,
        /// Where the networks run: cpu (default), cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Network dtype: f32 (the parity contract, judged at the golden tolerances) or bf16
        /// (the GPU's model dtype: every tensor's error is reported as drift, not judged).
        #[arg(long, value_enum, default_value_t = GoldenDtype::F32)]
        dtype: GoldenDtype,
    },
}

/// Float dtypes the goldens can be checked in.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum GoldenDtype {
    /// f32: judged.
    F32,
    /// bf16: drift reported.
    Bf16,
}

/// Runs a `goldens` subcommand.
pub fn run(command: GoldensCommand) -> anyhow::Result<ExitCode> {
    match command {
        GoldensCommand::Check { dir, device, dtype } => {
            let target = longcat_parity::Target {
                device: crate::device::parse_device(&device)?,
                dtype: match dtype {
                    GoldenDtype::F32 => candle_core::DType::F32,
                    GoldenDtype::Bf16 => candle_core::DType::BF16,
                },
            };
            println!("goldens on {}", target.describe());
            let report = longcat_parity::check_dir_on(&dir, target, |r| {
                println!("{}", longcat_parity::runner::format_result(r))
            })?;
            for s in &report.skipped {
                println!("SKIP {} ({})", s.file, s.reason);
            }
            if !report.support_files.is_empty() {
                println!(
                    "support files (weights): {}",
                    report.support_files.join(", ")
                );
            }
            println!("{}", report.summary_line());
            Ok(if report.failed() == 0 && report.passed() > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
