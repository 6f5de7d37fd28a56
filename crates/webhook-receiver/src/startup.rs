//! Wiring: build the agent from validated settings, bind, serve until shutdown, drain.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::budget::{BudgetPolicy, RestartBudget};
use crate::clock::Clock;
use crate::config::{notify_url, NotifyFormatChoice, Settings};
use crate::context::Context;
use crate::engine::{watch_events, Engine, EngineConfig, Strategy};
use crate::history::{EscalationPolicy, History};
use crate::incidents::{IncidentStore, LogOptions, TriggerKind};
use crate::intake::{router, AppState, DockerAccess};
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifyConfig, NotifyFormat};
use crate::probe::{HttpProber, ProbeConfig, Prober};
use crate::runtime::docker::DockerRuntime;
use crate::runtime::ContainerRuntime;
use crate::scope::Scope;
use crate::tools::tool_names;

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
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// What a test (or an embedding) may swap: the runtime, the prober and the clock.
pub struct Parts {
    pub runtime: Arc<dyn ContainerRuntime>,
    /// `None`: HTTP probes from the settings.
    pub prober: Option<Arc<dyn Prober>>,
    pub clock: Clock,
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    events: bool,
    reconcile_every: Duration,
    /// `DRAIN_TIMEOUT`: how long runs in flight may finish after a shutdown signal; the rest are
    /// recorded `interrupted`. Compose gives the agent `stop_grace_period: 30s`.
    drain: Duration,
    /// Flushed at shutdown, so the last attempts are on disk before the process ends.
    budget: Arc<RestartBudget>,
}

impl Application {
    /// Builds everything and binds the listener (port 0 allowed: see [`Application::port`]).
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(DockerRuntime::new(
            (!settings.docker_host.is_empty()).then(|| settings.docker_host.clone()),
        ));
        Self::build_with(
            settings,
            Parts {
                runtime,
                prober: None,
                clock: Clock::system(),
            },
        )
        .await
    }

    pub async fn build_with_runtime(
        settings: &Settings,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> Result<Self, StartError> {
        Self::build_with(
            settings,
            Parts {
                runtime,
                prober: None,
                clock: Clock::system(),
            },
        )
        .await
    }

    pub async fn build_with(settings: &Settings, parts: Parts) -> Result<Self, StartError> {
        let runtime = parts.runtime;
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
                    write_errors: metrics.incident_log_errors.with_label_values(&["append"]),
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
        let prober = match parts.prober {
            Some(p) => p,
            None => Arc::new(HttpProber::new(ProbeConfig {
                replica_port: settings.replica_probe_port()?,
                replica_path: settings.replica_probe_path.clone(),
                timeout: settings.replica_probe_timeout,
                service_url: settings.health_url(),
            })),
        };
        let ctx = Arc::new(Context {
            runtime,
            prober,
            budget: budget.clone(),
            history: Arc::new(History::new(EscalationPolicy {
                after: settings.escalate_after,
                window: settings.escalate_window,
                crash_on_start_tries: settings.crash_on_start_tries,
            })),
            metrics: metrics.clone(),
            clock: parts.clock,
            dry_run: settings.dry_run,
            stable_after: settings.restart_stable,
            verify_timeout: settings.verify_timeout,
            own: Default::default(),
            stops: Default::default(),
            outages: Default::default(),
        });
        let notifier = match notify_url() {
            Some(url) => Notifier::spawn(
                NotifyConfig {
                    url,
                    format: match settings.notify_format {
                        NotifyFormatChoice::Json => NotifyFormat::Json,
                        NotifyFormatChoice::Slack => NotifyFormat::Slack,
                    },
                    timeout: settings.notify_timeout,
                },
                metrics.clone(),
            ),
            None => Notifier::disabled(metrics.clone()),
        };
        let scope = Scope::new(project.clone(), services.clone());
        let engine = Engine::new(
            ctx,
            scope,
            strategy,
            incidents.clone(),
            notifier.clone(),
            metrics.clone(),
            EngineConfig {
                debounce: settings.debounce,
                ..EngineConfig::default()
            },
        );
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: settings.listen_addr,
                source,
            })?;
        let token = settings.token();
        let warnings = settings.warnings();
        for w in &warnings {
            tracing::warn!("{w}");
        }
        tracing::info!(
            addr = %listener.local_addr().map_err(|source| StartError::Bind { addr: settings.listen_addr, source })?,
            project = %project, services = ?services, dry_run = settings.dry_run, docker_events = settings.docker_events,
            notify = notifier.enabled(), incident_log = ?incidents.path(), "agent listening"
        );
        let state = AppState {
            engine,
            metrics,
            incidents,
            token,
            max_body: settings.webhook_max_bytes,
            docker: Arc::new(Mutex::new(DockerAccess::Unknown)),
            dry_run: settings.dry_run,
            docker_events: settings.docker_events,
            warnings: Arc::new(warnings),
        };
        Ok(Application {
            listener,
            state,
            events: settings.docker_events,
            reconcile_every: settings.reconcile_interval,
            drain: settings.drain_timeout,
            budget,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn engine(&self) -> Engine {
        self.state.engine.clone()
    }

    /// Serves until `shutdown` completes, then lets in-flight healing runs finish (bounded; the
    /// rest are recorded `interrupted`).
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let engine = self.state.engine.clone();
        let mut background = vec![tokio::spawn(supervise_docker(
            engine.clone(),
            self.state.docker.clone(),
            self.state.metrics.clone(),
        ))];
        // Replicas that died while the agent was down are healed now, not at the next trigger.
        engine.reconcile_all(TriggerKind::Startup, "agent started");
        if self.events {
            background.push(tokio::spawn(watch_events(engine.clone())));
        }
        if !self.reconcile_every.is_zero() {
            background.push(tokio::spawn(resync(engine.clone(), self.reconcile_every)));
        }
        let app = router(self.state);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        for task in &background {
            task.abort();
        }
        if !engine.shutdown(self.drain).await {
            tracing::warn!("runs cut short by the shutdown were recorded as interrupted");
        }
        self.budget.flush().await;
        tracing::info!("agent stopped");
        served
    }
}

/// The periodic resync: a look at every service, whatever the triggers say.
async fn resync(engine: Engine, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        engine.reconcile_all(TriggerKind::Reconcile, "periodic resync");
        engine.context().history.prune(engine.context().clock.now());
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

/// Keeps the Docker access state current (reachable? may it list, inspect and act?) and logs
/// every change; the runtime reconnects by itself on the next call.
async fn supervise_docker(engine: Engine, access: Arc<Mutex<DockerAccess>>, metrics: Metrics) {
    let ctx = engine.context().clone();
    let project = engine.scope().project().to_string();
    let services: Vec<String> = engine.scope().services().map(str::to_string).collect();
    let mut was_ok = false;
    loop {
        let now = match ctx.runtime.ping().await {
            Err(e) => DockerAccess::Missing(e.to_string()),
            // The write check costs the daemon a (harmless) 404 each time: only after a change.
            Ok(()) => self_test(&ctx, &project, &services, !was_ok).await,
        };
        metrics
            .docker_up
            .set(i64::from(!matches!(now, DockerAccess::Missing(_))));
        let changed = {
            let mut a = access.lock().unwrap_or_else(|p| p.into_inner());
            let changed = std::mem::discriminant(&*a) != std::mem::discriminant(&now);
            *a = now.clone();
            changed
        };
        if changed {
            match &now {
                DockerAccess::Ok => {
                    tracing::info!("docker is reachable: the agent can list, inspect and act")
                }
                DockerAccess::ReadOnly(why) => {
                    tracing::error!(%why, "docker access is read-only: the agent can diagnose but not heal")
                }
                DockerAccess::Missing(why) => {
                    tracing::warn!(%why, "docker is unreachable; the agent keeps serving and retries")
                }
                DockerAccess::Unknown => {}
            }
        }
        let ok = matches!(now, DockerAccess::Ok);
        was_ok = ok;
        tokio::time::sleep(Duration::from_secs(if ok { 10 } else { 2 })).await;
    }
}

/// Lists and inspects what the agent heals and checks it may act, changing nothing.
async fn self_test(
    ctx: &Context,
    project: &str,
    services: &[String],
    check_write: bool,
) -> DockerAccess {
    for s in services {
        match ctx.runtime.list(project, s).await {
            Ok(list) => {
                if let Some(first) = list.first() {
                    if let Err(e) = ctx.runtime.inspect(first, false).await {
                        return DockerAccess::Missing(format!(
                            "cannot inspect {}: {e}",
                            first.name
                        ));
                    }
                }
            }
            Err(e) => {
                return DockerAccess::Missing(format!("cannot list the containers of {s}: {e}"))
            }
        }
    }
    if !check_write {
        return DockerAccess::Ok;
    }
    match ctx.runtime.can_act().await {
        Ok(true) => DockerAccess::Ok,
        Ok(false) => DockerAccess::ReadOnly(
            "starting a container is refused (403): check the Docker socket proxy's rules".into(),
        ),
        Err(e) => DockerAccess::Missing(format!("cannot check write access: {e}")),
    }
}
