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
    },
}

/// Runs a `goldens` subcommand.
pub fn run(command: GoldensCommand) -> anyhow::Result<ExitCode> {
    match command {
        GoldensCommand::Check { dir } => {
            let report = longcat_parity::check_dir(&dir, |r| {
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
