//! Binding the two listeners and serving them until shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{self, AppState};
use crate::config::Config;
use crate::leak::Leak;
use crate::metrics::Metrics;
use crate::serve;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}; is the port taken?")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{what} server failed: {source}")]
    Serve {
        what: &'static str,
        source: io::Error,
    },
}

/// A bound but not yet serving app; ask it for its ports, then [`Application::run_until`].
pub struct Application {
    app_listener: TcpListener,
    metrics_listener: TcpListener,
    app_addr: SocketAddr,
    metrics_addr: SocketAddr,
    state: AppState,
    drain_timeout: Duration,
}

impl Application {
    /// Binds `config.app_addr()` and `config.metrics_addr()`; port 0 picks a free one.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let app_listener = bind("app", config.app_addr()).await?;
        let metrics_listener = bind("metrics", config.metrics_addr()).await?;
        Self::from_listeners(config, app_listener, metrics_listener)
    }

    /// Serves on listeners the caller already bound (ports in `config` are ignored).
    pub fn from_listeners(
        config: Config,
        app_listener: TcpListener,
        metrics_listener: TcpListener,
    ) -> Result<Self, StartError> {
        let local_addr = |what, listener: &TcpListener, addr| {
            listener
                .local_addr()
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        let app_addr = local_addr("app", &app_listener, config.app_addr())?;
        let metrics_addr = local_addr("metrics", &metrics_listener, config.metrics_addr())?;
        let state = AppState {
            instance: config.instance.as_str().into(),
            leak: Arc::new(Leak::new(config.leak_bytes_per_request)),
            metrics: Metrics::new()?,
            response_delay: config.response_delay,
        };
        Ok(Self {
            app_listener,
            metrics_listener,
            app_addr,
            metrics_addr,
            state,
            drain_timeout: config.drain_timeout,
        })
    }

    pub fn app_addr(&self) -> SocketAddr {
        self.app_addr
    }

    pub fn port(&self) -> u16 {
        self.app_addr.port()
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn metrics_port(&self) -> u16 {
        self.metrics_addr.port()
    }

    /// Serves both listeners until `shutdown` completes, then drains both (see [`crate::serve`])
    /// for at most the configured drain timeout, and returns.
    pub async fn run_until<F>(self, shutdown: F) -> Result<(), StartError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let limit = self.state.metrics.memory_limit_bytes();
        tracing::info!(
            app_addr = %self.app_addr,
            metrics_addr = %self.metrics_addr,
            instance = %self.state.instance,
            leak_bytes_per_request = self.state.leak.bytes_per_request(),
            memory_limit_bytes = limit,
            drain_timeout_ms = self.drain_timeout.as_millis() as u64,
            response_delay_ms = self.state.response_delay.as_millis() as u64,
            "listening"
        );

        // One shutdown future, two servers: fan it out through a watch channel.
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: refusing new connections, draining requests");
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let metrics_router = app::metrics_router(self.state.metrics.clone());
        let drain = self.drain_timeout;
        let (app, metrics) = tokio::join!(
            serve::serve(
                self.app_listener,
                app::router(self.state),
                stopped(stop_rx.clone()),
                drain
            ),
            serve::serve(
                self.metrics_listener,
                metrics_router,
                stopped(stop_rx),
                drain
            ),
        );
        let app = app.map_err(|source| StartError::Serve {
            what: "app",
            source,
        })?;
        let metrics = metrics.map_err(|source| StartError::Serve {
            what: "metrics",
            source,
        })?;
        let cut = app.cut + metrics.cut;
        if cut > 0 {
            tracing::warn!(
                cut,
                drain_timeout_ms = drain.as_millis() as u64,
                "drain timeout passed: connections still open were cut"
            );
        }
        tracing::info!(
            connections = app.open + metrics.open,
            cut,
            drain_ms = app.took.max(metrics.took).as_secs_f64() * 1e3,
            "shut down cleanly"
        );
        Ok(())
    }
}

/// Binds, serves and returns once `shutdown` completes and both servers drained.
pub async fn run<F>(config: Config, shutdown: F) -> Result<(), StartError>
where
    F: Future<Output = ()> + Send + 'static,
{
    Application::build(config).await?.run_until(shutdown).await
}

/// Completes on the first SIGTERM (`docker stop`) or SIGINT (Ctrl-C), and logs which. With
/// `ignore_sigterm` (the `IGNORE_SIGTERM` test knob: a replica that will not drain) SIGTERM is
/// logged and ignored, so Docker's stop timeout ends the process with SIGKILL; SIGINT still works.
pub async fn shutdown_signal(ignore_sigterm: bool) {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => loop {
                term.recv().await;
                if !ignore_sigterm {
                    break;
                }
                tracing::warn!(
                    "SIGTERM ignored (IGNORE_SIGTERM): not draining; the stop timeout will kill this replica"
                );
            },
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = {
        let _ = ignore_sigterm;
        std::future::pending::<()>()
    };

    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutdown signal received"),
        () = term => tracing::info!(signal = "SIGTERM", "shutdown signal received"),
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}
