use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use socket_proxy::config::{Cli, Command};
use socket_proxy::upstream::Upstream;
use socket_proxy::{healthcheck, Proxy};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck) = cli.command {
        return match healthcheck::healthcheck(cli.config.listen.port()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("socket-proxy healthcheck: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // An empty RUST_LOG (compose passes `${SOCKET_PROXY_RUST_LOG:-}`) means the default, not
    // "errors only".
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .init();
    let config = cli.config;
    let scope = match config.scope() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("socket-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("socket-proxy: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        listen = %config.listen, upstream = %config.upstream_socket.display(),
        project = scope.project(), services = ?scope.services(), "socket proxy listening"
    );
    let proxy = Arc::new(Proxy::new(scope, Upstream::new(config.upstream_socket)));
    match socket_proxy::run(proxy, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server error");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
    tracing::info!("shutdown signal received");
}
