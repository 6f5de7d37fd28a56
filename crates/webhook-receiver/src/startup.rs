//! Wiring: build the agent from validated settings, bind, serve until shutdown, drain.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::budget::{BudgetPolicy, RestartBudget};
use crate::clock::Clock;
use crate::config::{notify_url, NotifyFormatChoice, Settings};
use crate::context::Context;
use crate::engine::{Engine, EngineConfig, RecycleConfig, Strategy};
use crate::history::{EscalationPolicy, History};
use crate::incidents::{IncidentStore, LogOptions, TriggerKind};
use crate::intake::{router, AppState, DockerAccess};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifyConfig, NotifyFormat};
use crate::probe::{HttpProber, ProbeConfig, Prober};
use crate::runtime::docker::DockerRuntime;
use crate::runtime::ContainerRuntime;
use crate::scope::Scope;
use crate::stops::StopLedger;
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
    /// The socket refuses the agent: retrying cannot help, and the message says what will.
    #[error("{0}")]
    Docker(crate::runtime::RuntimeError),
    #[error(transparent)]
    Llm(#[from] crate::agent::AgentError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
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
    /// Flushed at shutdown, so the last restarts and stops seen are on disk before the process
    /// ends (and the stops' heartbeat says when the agent stopped watching).
    budget: Arc<RestartBudget>,
    stops: Arc<StopLedger>,
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
        // A log it cannot write is a fault reported on /healthz, not a reason to stop healing.
        let incidents = Arc::new(
            IncidentStore::open_or_degrade(
                settings.incident_log(),
                LogOptions {
                    max_bytes: settings.incident_log_max_bytes,
                    keep: settings.incident_log_keep,
                    write_errors: metrics.incident_log_errors.with_label_values(&["append"]),
                },
            )
            .await,
        );
        let budget = Arc::new(
            RestartBudget::open(
                BudgetPolicy {
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
        let stops = Arc::new(StopLedger::open(settings.stops_state(), parts.clock.now()).await);
        let history = History::new(EscalationPolicy {
            after: settings.escalate_after,
            window: settings.escalate_window,
            crash_on_start_tries: settings.crash_on_start_tries,
        });
        let ctx = Arc::new(Context {
            runtime,
            prober,
            ledger: Arc::new(Ledger::new(budget.clone(), history)),
            stops: stops.clone(),
            metrics: metrics.clone(),
            clock: parts.clock,
            dry_run: settings.dry_run,
            stable_after: settings.restart_stable,
            verify_timeout: settings.verify_timeout,
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
        engine.configure_recycle(RecycleConfig {
            all_services: settings.preventive_recycle,
            every: settings.recycle_interval,
            stop_timeout_secs: settings.recycle_stop_timeout.as_secs() as u32,
        });
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: settings.listen_addr,
                source,
            })?;
        let (token, token_warnings) = webhook_token(settings).await?;
        let mut warnings = settings.warnings();
        for w in &warnings {
            tracing::warn!("{w}");
        }
        warnings.extend(token_warnings);
        tracing::info!(
            addr = %listener.local_addr().map_err(|source| StartError::Bind { addr: settings.listen_addr, source })?,
            project = %project, services = ?services, dry_run = settings.dry_run, docker_events = settings.docker_events,
            notify = notifier.enabled(), preventive_recycle = settings.preventive_recycle, incident_log = ?incidents.path(), "agent listening"
        );
        let state = AppState {
            engine,
            metrics,
            incidents,
            token,
            webhook_open: settings.webhook_auth == crate::config::WebhookAuth::None,
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
            stops,
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
        let background = crate::background::spawn_all(
            &engine,
            self.state.docker.clone(),
            self.events,
            self.reconcile_every,
        );
        // Replicas that died while the agent was down are healed now, not at the next trigger.
        engine.reconcile_all(TriggerKind::Startup, "agent started");
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
        let now = engine.context().clock.now();
        self.stops.close(now).await;
        tracing::info!("agent stopped");
        served
    }
}

/// The token in use (configured, or generated and kept), written for Alertmanager when a share
/// path is set. Says where it came from, never what it is. A token file that cannot be read or
/// written does not stop the agent (as an unwritable incident log does not): it is a warning,
/// returned for `/healthz`.
async fn webhook_token(
    settings: &Settings,
) -> Result<(crate::secret::Secret, Vec<String>), StartError> {
    let configured = settings.token();
    let state = settings.token_state();
    let share = settings.token_share();
    let (token, origin, shared) = tokio::task::spawn_blocking(move || {
        let (token, origin) = crate::token::resolve(configured, state.as_deref())?;
        let shared = share
            .as_deref()
            .map(|path| crate::token::share(&token, path))
            .transpose();
        Ok::<_, crate::token::TokenError>((token, origin, shared))
    })
    .await
    .expect("the token task does not panic")?;
    let mut warnings = Vec::new();
    match origin {
        crate::token::Origin::Configured => {
            tracing::info!("webhook token: configured (WEBHOOK_TOKEN)")
        }
        crate::token::Origin::Kept(path) => tracing::info!(
            path = %path.display(),
            "webhook token: generated by the agent and kept; `webhook-receiver token` prints it"
        ),
        crate::token::Origin::Ephemeral => tracing::warn!(
            "webhook token: generated for this process only (no INCIDENT_LOG or TOKEN_STATE to keep it in)"
        ),
        crate::token::Origin::Unkept(why) => {
            let w = format!("webhook token generated for this process only: {why}");
            tracing::warn!("{w}");
            warnings.push(w);
        }
    }
    if let Err(e) = shared {
        let w =
            format!("Alertmanager cannot be given the token (its deliveries will get 401): {e}");
        tracing::error!("{w}");
        warnings.push(w);
    }
    Ok((token, warnings))
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
            Err(e @ crate::runtime::RuntimeError::Denied(_)) => return Err(StartError::Docker(e)),
            // The socket proxy answers inspects of this project's healable replicas only.
            Err(crate::runtime::RuntimeError::Api(m)) if m.starts_with("HTTP 403") => {
                return Err(StartError::NoProject(format!(
                    "the Docker API proxy refuses to inspect the agent's own container {host} ({m})"
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
