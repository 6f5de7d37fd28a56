//! Logging setup: `RUST_LOG` filters (default info), human or JSON lines.
//!
//! async-openai logs raw provider bodies itself (`async_openai::error` at error level: "failed
//! deserialization of: <body>"; `async_openai::client` at warn: "Server error: <status> - <body>"),
//! past the scrubbing the providers do. A body may echo the API key, so those targets are dropped
//! whatever `RUST_LOG` says: our provider code logs every failure itself, key removed.

use tracing::Metadata;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Targets never logged, whatever the filter.
const SILENCED: &[&str] = &["async_openai"];

/// True when an event or span of `metadata` may be logged at all.
pub fn allowed(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    !SILENCED.iter().any(|s| {
        target
            .strip_prefix(s)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: `docker logs` and log shippers get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi);
    let fmt = match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter.and(filter_fn(allowed))))
        .try_init();
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn async_openai_is_silenced_even_at_trace() {
        let out = Captured::default();
        let writer = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_filter(EnvFilter::new("trace,async_openai=trace").and(filter_fn(allowed)));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "async_openai::error", "failed deserialization of: sk-SECRET");
            tracing::warn!(target: "async_openai::client", "Server error: 500 - sk-SECRET");
            tracing::warn!(target: "async_openai", "sk-SECRET");
            tracing::info!(target: "async_openai_lookalike", "kept");
            tracing::info!(target: "webhook_receiver::llm", "kept too");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("sk-SECRET"), "{text}");
        assert_eq!(text.matches("kept").count(), 2, "{text}");
    }
}
