//! What the fake binaries share: port, logging, serving until SIGTERM, and the container
//! healthcheck (the FROM scratch images have no curl).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;

/// `PORT`, default 8080.
pub fn port() -> anyhow::Result<u16> {
    match std::env::var("PORT") {
        Ok(p) => p.parse().context("PORT must be a port number"),
        Err(_) => Ok(8080),
    }
}

pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
}

/// Serves `router` on 0.0.0.0:`port` until Ctrl-C or SIGTERM.
pub async fn serve(port: u16, router: axum::Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("binding port {port}"))?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} },
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `GET /healthz` on loopback must answer 200.
pub fn healthcheck(port: u16) -> anyhow::Result<()> {
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
