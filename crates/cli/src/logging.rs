//! Process logs: the `tracing` subscriber every subcommand writes through (stderr, filtered
//! by `RUST_LOG`, default `info`), as text or as one JSON object per line.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`, env `LONGCAT_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; span fields (`request_id`, ...) appear as a `span{...}:` prefix.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields`, `target`, `threadName`, the
    /// current `span` and the whole `spans` list with their fields (`request_id`, ...).
    Json,
}

/// Installs the global subscriber writing `format` to stderr.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_thread_names(true)
            .init(),
    }
}
