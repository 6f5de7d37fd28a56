//! A fake Gemini for the end-to-end stack: heals by reading the conversation.
//!
//! `PORT` (default 8080) on 0.0.0.0; `FAKE_LATENCY_MS` (default 500) per answer;
//! `FAKE_GEMINI_API_KEY` the key to require (unset: any non-empty key). `fake-gemini healthcheck`
//! probes `/healthz` for a container healthcheck (the image needs no curl).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;
use fake_llm::{gemini, Brain, GeminiOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().context("PORT must be a port number")?,
        Err(_) => 8080,
    };
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck(port);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let latency_ms: u64 = match std::env::var("FAKE_LATENCY_MS") {
        Ok(v) => v.parse().context("FAKE_LATENCY_MS must be milliseconds")?,
        Err(_) => 500,
    };
    let options = GeminiOptions {
        api_key: std::env::var("FAKE_GEMINI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
        call_ids: false,
        latency: Duration::from_millis(latency_ms),
    };
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("binding port {port}"))?;
    tracing::info!(port, latency_ms, "fake-gemini listening");
    axum::serve(listener, gemini::router(Brain::Healer, options))
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn healthcheck(port: u16) -> anyhow::Result<()> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    anyhow::ensure!(
        response.starts_with("HTTP/1.1 200"),
        "unhealthy: {}",
        response.lines().next().unwrap_or("")
    );
    Ok(())
}
