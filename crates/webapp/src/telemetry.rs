//! Logging setup: human-readable or JSON lines on stdout, filtered by `RUST_LOG` (read with
//! the other settings in `config`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. A filter that does not parse falls back to `info`, with a
/// warning once logging works.
pub fn init_tracing(format: LogFormat, filter: &str) {
    let (filter, bad_filter) = match EnvFilter::try_new(filter) {
        Ok(parsed) => (parsed, None),
        Err(error) => (EnvFilter::new("info"), Some(error)),
    };
    // Colours only for a terminal: `docker logs` would show raw escape codes.
    let ansi = std::io::stdout().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    if let Some(error) = bad_filter {
        tracing::warn!(%error, "RUST_LOG does not parse; logging at info");
    }
}
