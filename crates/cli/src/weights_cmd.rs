//! `longcat weights check DIR`: validates a checkpoint from its safetensors headers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use longcat_model::checkpoint::verify::{check_checkpoint, CheckReport, ComponentSummary};

/// Subcommands of `longcat weights`.
#[derive(Subcommand)]
pub enum WeightsCommand {
    /// Check a checkpoint directory against what our networks load, from the safetensors
    /// headers alone (no tensor is read): names, shapes and dtypes of dit, vae,
    /// text_encoder and the LoRAs, the shard indexes and the LoRA layout. One line per
    /// component, then every problem with its file; exits non-zero on any problem.
    Check {
        /// The checkpoint directory (dit/, vae/, text_encoder/, tokenizer/, scheduler/, lora/).
        dir: PathBuf,
    },
}

/// Runs a `weights` subcommand.
pub fn run(command: WeightsCommand) -> anyhow::Result<ExitCode> {
    match command {
        WeightsCommand::Check { dir } => {
            let report = check_checkpoint(&dir);
            print!("{}", format_report(&report));
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// `1234567` -> `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn component_line(c: &ComponentSummary) -> String {
    let dtypes = c
        .dtypes
        .iter()
        .map(|(d, n)| format!("{d} x{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut line = format!(
        "{:<34} {:>5} tensors  {:>15} parameters  {:>7.2} GB  {}  ({} file{})",
        c.name,
        c.tensors,
        thousands(c.parameters),
        c.bytes as f64 / 1e9,
        dtypes,
        c.files,
        if c.files == 1 { "" } else { "s" }
    );
    for note in &c.notes {
        line.push_str("; ");
        line.push_str(note);
    }
    line
}

/// The report as printed: one line per component, warnings, problems, a verdict line.
pub fn format_report(report: &CheckReport) -> String {
    let mut out = String::new();
    for c in &report.components {
        out.push_str(&component_line(c));
        out.push('\n');
    }
    for w in &report.warnings {
        out.push_str(&format!("note: {w}\n"));
    }
    for p in &report.problems {
        out.push_str(&format!("PROBLEM {p}\n"));
    }
    if report.ok() {
        out.push_str("OK: every tensor our networks request is stored with its shape\n");
    } else {
        out.push_str(&format!("FAILED: {} problem(s)\n", report.problems.len()));
    }
    out
}
