//! Wiring: build the agent from validated settings, bind, serve until shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::budget::{BudgetPolicy, RestartBudget};
use crate::config::Settings;
use crate::engine::{watch_events, Engine, EngineConfig, Strategy};
use crate::incidents::{IncidentStore, LogOptions};
use crate::intake::{router, AppState};
use crate::metrics::Metrics;
use crate::runtime::docker::DockerRuntime;
use crate::runtime::ContainerRuntime;
use crate::scope::Scope;
use crate::tools::{tool_names, ToolContext};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Incidents(#[from] crate::incidents::StoreError),
    #[error("HEAL_PROJECT is not set and the agent's own compose project could not be found ({0}); set HEAL_PROJECT to the compose project to heal")]
    NoProject(String),
    #[error(transparent)]
    Llm(#[from] crate::agent::AgentError),
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    ctx: Arc<ToolContext>,
    events: bool,
    drain_timeout: Duration,
}

impl Application {
    /// Builds everything and binds the listener (port 0 allowed: see [`Application::port`]).
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(DockerRuntime::new(
            (!settings.docker_host.is_empty()).then(|| settings.docker_host.clone()),
        ));
        Self::build_with_runtime(settings, runtime).await
    }

    pub async fn build_with_runtime(
        settings: &Settings,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> Result<Self, StartError> {
        let project = resolve_project(settings, runtime.as_ref()).await?;
        let services = settings.services();
        let metrics = Metrics::new(&services, &["gemini", "openai"], &tool_names());
        let strategy: Arc<dyn Strategy> = crate::agent::build_strategy(settings, &metrics)?;
        match strategy.describe() {
            Some((provider, model)) => {
                tracing::info!(%provider, %model, "LLM-driven healing (the runbook is the fallback)")
            }
            None => tracing::info!("no LLM configured: the built-in runbook heals"),
        }
        let incidents = Arc::new(
            IncidentStore::open_with(
                settings.incident_log(),
                LogOptions {
                    max_bytes: settings.incident_log_max_bytes,
                    keep: settings.incident_log_keep,
                    write_errors: metrics.incident_log_write_errors.clone(),
                },
            )
            .await?,
        );
        let budget = Arc::new(
            RestartBudget::open(
                BudgetPolicy {
                    max_restarts: settings.restart_budget,
                    window: settings.restart_window,
                    backoff_base: settings.restart_backoff,
                    backoff_max: settings.restart_backoff_max,
                    stable_after: settings.restart_stable,
                },
                settings.budget_state(),
            )
            .await,
        );
        let ctx = Arc::new(ToolContext {
            runtime,
            budget,
            metrics: metrics.clone(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .build()
                .expect("http client builds"),
            health_url: settings.health_url(),
            dry_run: settings.dry_run,
            own_restarts: Mutex::new(Default::default()),
        });
        let scope = Scope::new(project.clone(), services.clone());
        let engine = Engine::new(
            ctx.clone(),
            scope,
            strategy,
            incidents.clone(),
            metrics.clone(),
            EngineConfig {
                verify_timeout: settings.verify_timeout,
                debounce: settings.debounce,
            },
        );
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: settings.listen_addr,
                source,
            })?;
        tracing::info!(
            addr = %listener.local_addr().map_err(|source| StartError::Bind { addr: settings.listen_addr, source })?,
            project = %project, services = ?services, dry_run = settings.dry_run, docker_events = settings.docker_events,
            incident_log = ?incidents.path(), "agent listening"
        );
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let state = AppState {
            engine,
            metrics,
            incidents,
            token: settings.token(),
            max_body: settings.webhook_max_bytes,
            docker_up: Arc::new(AtomicBool::new(false)),
            dry_run: settings.dry_run,
            docker_events: settings.docker_events,
        };
        Ok(Application {
            listener,
            state,
            ctx,
            events: settings.docker_events,
            drain_timeout: settings.drain_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn engine(&self) -> Engine {
        self.state.engine.clone()
    }

    /// Serves until `shutdown` completes, then lets in-flight healing runs finish (bounded).
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let supervisor = tokio::spawn(supervise_docker(
            self.ctx.clone(),
            self.state.docker_up.clone(),
            self.state.metrics.clone(),
        ));
        let events = self
            .events
            .then(|| tokio::spawn(watch_events(self.state.engine.clone(), self.ctx.clone())));
        let engine = self.state.engine.clone();
        let app = router(self.state);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        if let Some(e) = events {
            e.abort();
        }
        supervisor.abort();
        if !engine.wait_idle(self.drain_timeout).await {
            tracing::warn!("shutting down with a healing run still in flight");
        }
        self.ctx.budget.flush().await;
        tracing::info!("agent stopped");
        served
    }
}

async fn resolve_project(
    settings: &Settings,
    runtime: &dyn ContainerRuntime,
) -> Result<String, StartError> {
    if !settings.heal_project.is_empty() {
        return Ok(settings.heal_project.clone());
    }
    // In a compose container the hostname is the container id; its labels name the project.
    let host = std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    if host.is_empty() {
        return Err(StartError::NoProject("no hostname".into()));
    }
    let mut last = String::new();
    for attempt in 0..10 {
        match runtime.compose_project_of(&host).await {
            Ok(Some(p)) => {
                tracing::info!(project = %p, "healing the agent's own compose project");
                return Ok(p);
            }
            Ok(None) => {
                return Err(StartError::NoProject(format!(
                    "container {host} has no compose project label"
                )))
            }
            Err(crate::runtime::RuntimeError::NotFound(_)) => {
                return Err(StartError::NoProject(format!(
                    "not running in a container ({host} is not a container)"
                )))
            }
            Err(e) => {
                last = e.to_string();
                tracing::warn!(attempt, error = %e, "docker not reachable yet; retrying to find the compose project");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Err(StartError::NoProject(last))
}

/// Keeps `docker_up` current and logs transitions; the runtime reconnects by itself on the next call.
async fn supervise_docker(ctx: Arc<ToolContext>, up: Arc<AtomicBool>, metrics: Metrics) {
    loop {
        let ok = ctx.runtime.ping().await.is_ok();
        if up.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("docker is reachable");
            } else {
                tracing::warn!("docker is unreachable; the agent keeps serving and retries");
            }
        }
        metrics.docker_up.set(ok as i64);
        tokio::time::sleep(Duration::from_secs(if ok { 5 } else { 1 })).await;
    }
}
