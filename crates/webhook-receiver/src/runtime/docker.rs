//! The one bollard implementation of [`ContainerRuntime`], and the one place a Docker client is built.
//!
//! The client is created lazily and dropped on any connection error, so that the next call connects
//! again and re-negotiates the API version (the daemon may have been restarted, or replaced by another
//! version). Debian's dockerd 20.10 speaks API 1.41 while bollard defaults to 1.53, hence
//! `negotiate_version` on every fresh connection.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::models::HealthcheckResult;
use bollard::models::{ContainerStateStatusEnum, EventMessage, HealthStatusEnum};
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RestartContainerOptionsBuilder, StartContainerOptions, StatsOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::Mutex;

use super::{
    ContainerRef, ContainerRuntime, EventKind, Health, HealthProbe, ReplicaState, RuntimeError,
    RuntimeEvent, Status, LABEL_PREFIX,
};

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// Bound on how long one Docker API call may take; a hung daemon must not hang a healing run.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on the one-shot memory reading of a replica within an inspect (diagnosis: never worth
/// holding up a healing run for).
const STATS_TIMEOUT: Duration = Duration::from_millis(500);
/// Bound on a memory reading for preventive recycling: dockerd answers a one-shot stats request
/// at its next collection, up to a second later (measured here: 1.0 s for most calls).
const MEMORY_TIMEOUT: Duration = Duration::from_secs(3);
/// Docker keeps this many healthcheck results per container.
const DOCKER_HEALTH_LOG_LEN: usize = 5;
/// Most bytes of one healthcheck output kept.
const MAX_PROBE_OUTPUT: usize = 200;
/// Most of our labels kept per container (they are operator input, but bounded all the same).
const MAX_LABELS: usize = 16;
/// Most events read back from the daemon's history in one lookup.
const MAX_HISTORY: usize = 2000;

pub struct DockerRuntime {
    host: Option<String>,
    client: Mutex<Option<Docker>>,
}

impl DockerRuntime {
    /// `host` like `unix:///var/run/docker.sock` or `tcp://127.0.0.1:2375`; `None` uses the
    /// environment's `DOCKER_HOST` or the local socket. Does not connect: the first call does.
    pub fn new(host: Option<String>) -> Self {
        DockerRuntime {
            host,
            client: Mutex::new(None),
        }
    }

    fn connect(&self) -> Result<Docker, BollardError> {
        match self.host.as_deref() {
            None => Docker::connect_with_local_defaults(),
            Some(h) if h.starts_with("unix://") || h.starts_with('/') => {
                Docker::connect_with_unix(h, 120, bollard::API_DEFAULT_VERSION)
            }
            Some(h) => Docker::connect_with_http(h, 120, bollard::API_DEFAULT_VERSION),
        }
    }

    async fn client(&self) -> Result<Docker, RuntimeError> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let docker = self.connect().map_err(|e| self.map_err(e))?;
        let docker = tokio::time::timeout(CALL_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| RuntimeError::Unreachable("timed out negotiating the API version".into()))?
            .map_err(|e| self.map_err(e))?;
        tracing::info!(api_version = %docker.client_version(), "connected to docker");
        *guard = Some(docker.clone());
        Ok(docker)
    }

    /// Runs one call with a timeout; a connection failure forgets the client.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, RuntimeError>
    where
        F: FnOnce(Docker) -> Fut,
        Fut: std::future::Future<Output = Result<T, BollardError>>,
    {
        let docker = self.client().await?;
        let result = match tokio::time::timeout(CALL_TIMEOUT, f(docker)).await {
            Ok(r) => r.map_err(|e| self.map_err(e)),
            Err(_) => Err(RuntimeError::Unreachable("docker call timed out".into())),
        };
        if let Err(e) = &result {
            if e.is_connection() {
                *self.client.lock().await = None;
            }
        }
        result
    }

    /// [`map_err`], plus the cause and fix when the unix socket refuses the agent or is missing.
    fn map_err(&self, e: BollardError) -> RuntimeError {
        if !matches!(e, BollardError::DockerResponseServerError { .. }) {
            if let Some(socket) = super::socket_access::socket_path(self.host.as_deref()) {
                let cause: &(dyn std::error::Error + 'static) = match &e {
                    // Transparent in bollard: its `source` skips the I/O error itself.
                    BollardError::IOError { err } => err,
                    other => other,
                };
                if let Some(why) = super::socket_access::explain(cause, &socket) {
                    return RuntimeError::Denied(why);
                }
            }
        }
        map_err(e)
    }
}

impl DockerRuntime {
    /// One stats reading: the memory in use (`None` for a container that is not running).
    async fn read_memory(&self, id: &str) -> Result<Option<u64>, RuntimeError> {
        let id = id.to_string();
        let opts = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let stats = self
            .call(|d| async move { d.stats(&id, Some(opts)).next().await.transpose() })
            .await?;
        Ok(stats.and_then(|s| s.memory_stats).and_then(|m| m.usage))
    }
}

fn map_err(e: BollardError) -> RuntimeError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => RuntimeError::NotFound(message),
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => RuntimeError::Api(format!("HTTP {status_code}: {message}")),
        BollardError::JsonDataError { .. } | BollardError::JsonSerdeError { .. } => {
            RuntimeError::Api(e.to_string())
        }
        other => RuntimeError::Unreachable(other.to_string()),
    }
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s?).ok()?.with_timezone(&Utc);
    // Docker reports "0001-01-01T00:00:00Z" for "never".
    (t.timestamp() > 0).then_some(t)
}

/// Our labels (`healstack.*`), bounded.
fn our_labels(labels: &HashMap<String, String>) -> std::collections::BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| k.starts_with(LABEL_PREFIX) && k.len() <= 64)
        .map(|(k, v)| (k.clone(), v.chars().take(64).collect()))
        .take(MAX_LABELS)
        .collect()
}

/// The first passing healthcheck of the container's current life, from Docker's short log.
fn healthy_since(
    log: &[HealthcheckResult],
    started_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let started_at = started_at?;
    let this_life: Vec<(DateTime<Utc>, bool)> = log
        .iter()
        .filter_map(|r| Some((parse_time(r.start.as_deref())?, r.exit_code == Some(0))))
        .filter(|(t, _)| *t >= started_at)
        .collect();
    let first_pass = this_life.iter().position(|(_, ok)| *ok)?;
    if first_pass == 0 && log.len() >= DOCKER_HEALTH_LOG_LEN {
        // The log is full and passes from its first entry on: the first pass may have aged out
        // of it, so count from the start (at most a healthcheck interval or two too early).
        return Some(started_at);
    }
    Some(this_life[first_pass].0)
}

fn label_filter(project: &str, service: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut labels = vec![format!("{PROJECT_LABEL}={project}")];
    if let Some(s) = service {
        labels.push(format!("{SERVICE_LABEL}={s}"));
    }
    HashMap::from([("label".to_string(), labels)])
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.call(|d| async move { d.ping().await })
            .await
            .map(|_| ())
    }

    async fn list(&self, project: &str, service: &str) -> Result<Vec<ContainerRef>, RuntimeError> {
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&label_filter(project, Some(service)))
            .build();
        let list = self
            .call(|d| async move { d.list_containers(Some(opts)).await })
            .await?;
        let mut out: Vec<ContainerRef> = list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                // The daemon filtered already; checking again costs nothing and keeps scope honest.
                if labels.get(PROJECT_LABEL).map(String::as_str) != Some(project)
                    || labels.get(SERVICE_LABEL).map(String::as_str) != Some(service)
                {
                    return None;
                }
                let name = c.names?.first()?.trim_start_matches('/').to_string();
                Some(ContainerRef {
                    id: c.id?,
                    name,
                    project: project.to_string(),
                    service: service.to_string(),
                    labels: our_labels(&labels),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn inspect(
        &self,
        container: &ContainerRef,
        with_stats: bool,
    ) -> Result<ReplicaState, RuntimeError> {
        let name = container.name.clone();
        let info = self
            .call(|d| async move {
                d.inspect_container(&name, None::<InspectContainerOptions>)
                    .await
            })
            .await?;
        let state = info.state.unwrap_or_default();
        let status = match state.status {
            Some(ContainerStateStatusEnum::CREATED) => Status::Created,
            Some(ContainerStateStatusEnum::RUNNING) => Status::Running,
            Some(ContainerStateStatusEnum::PAUSED) => Status::Paused,
            Some(ContainerStateStatusEnum::RESTARTING) => Status::Restarting,
            Some(ContainerStateStatusEnum::REMOVING) | Some(ContainerStateStatusEnum::STOPPING) => {
                Status::Removing
            }
            Some(ContainerStateStatusEnum::EXITED) => Status::Exited,
            Some(ContainerStateStatusEnum::DEAD) => Status::Dead,
            _ => Status::Unknown,
        };
        let started_at = parse_time(state.started_at.as_deref());
        let log = state
            .health
            .as_ref()
            .and_then(|h| h.log.clone())
            .unwrap_or_default();
        let healthy_since = healthy_since(&log, started_at);
        let health_log = log
            .iter()
            .rev()
            .take(DOCKER_HEALTH_LOG_LEN)
            .rev()
            .map(|r| HealthProbe {
                start: parse_time(r.start.as_deref()),
                exit_code: r.exit_code,
                output: crate::text::bounded(
                    r.output.as_deref().unwrap_or("").trim(),
                    MAX_PROBE_OUTPUT,
                ),
            })
            .collect();
        let ip = info
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|nets| {
                let mut names: Vec<&String> = nets.keys().collect();
                names.sort();
                names
                    .into_iter()
                    .filter_map(|k| nets.get(k)?.ip_address.as_deref())
                    .find_map(|a| a.parse().ok())
            });
        let health = state.health.and_then(|h| match h.status {
            Some(HealthStatusEnum::STARTING) => Some(Health::Starting),
            Some(HealthStatusEnum::HEALTHY) => Some(Health::Healthy),
            Some(HealthStatusEnum::UNHEALTHY) => Some(Health::Unhealthy),
            _ => None,
        });
        let memory_limit = info
            .host_config
            .and_then(|h| h.memory)
            .filter(|m| *m > 0)
            .map(|m| m as u64);
        let mut memory_usage = None;
        if with_stats && status == Status::Running {
            // Bounded: memory use is diagnosis, never worth holding up a healing run for.
            memory_usage = tokio::time::timeout(STATS_TIMEOUT, self.read_memory(&container.name))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
        }
        Ok(ReplicaState {
            container: container.clone(),
            status,
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            health,
            restart_count: info.restart_count.unwrap_or(0),
            healthy_since,
            health_log,
            started_at,
            finished_at: parse_time(state.finished_at.as_deref()),
            memory_limit,
            memory_usage,
            ip,
        })
    }

    async fn memory(&self, container: &ContainerRef) -> Result<Option<u64>, RuntimeError> {
        tokio::time::timeout(MEMORY_TIMEOUT, self.read_memory(&container.name))
            .await
            .map_err(|_| RuntimeError::Unreachable("docker stats timed out".into()))?
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        let id = name.to_string();
        self.call(|d| async move { d.start_container(&id, None::<StartContainerOptions>).await })
            .await
    }

    async fn restart(&self, name: &str, timeout_secs: u32) -> Result<(), RuntimeError> {
        let id = name.to_string();
        let opts = RestartContainerOptionsBuilder::new()
            .t(timeout_secs as i32)
            .build();
        self.call(|d| async move { d.restart_container(&id, Some(opts)).await })
            .await
    }

    async fn stop(&self, name: &str, timeout_secs: u32) -> Result<(), RuntimeError> {
        let name = name.to_string();
        let opts = StopContainerOptionsBuilder::new()
            .t(timeout_secs as i32)
            .build();
        // Docker answers 304 for a container already stopped: bollard maps that to Ok.
        self.call(|d| async move { d.stop_container(&name, Some(opts)).await })
            .await
    }

    async fn unpause(&self, name: &str) -> Result<(), RuntimeError> {
        let id = name.to_string();
        self.call(|d| async move { d.unpause_container(&id).await })
            .await
    }

    async fn logs_tail(&self, name: &str, lines: usize) -> Result<String, RuntimeError> {
        let id = name.to_string();
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        self.call(|d| async move {
            let mut stream = d.logs(&id, Some(opts));
            let mut out = String::new();
            while let Some(chunk) = stream.next().await {
                out.push_str(&chunk?.to_string());
            }
            Ok(out)
        })
        .await
    }

    async fn can_act(&self, project: &str, service: &str) -> Result<bool, RuntimeError> {
        // Docker answers 404 for a container that does not exist when starting is allowed; a
        // filtering proxy answers 403 when it is not. Replica 0 is a name the socket proxy
        // accepts and compose never gives.
        match self.start(&format!("{project}-{service}-0")).await {
            Err(RuntimeError::NotFound(_)) | Ok(()) => Ok(true),
            Err(RuntimeError::Api(m)) if m.starts_with("HTTP 403") => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn compose_project_of(&self, container: &str) -> Result<Option<String>, RuntimeError> {
        let id = container.to_string();
        let info = self
            .call(|d| async move {
                d.inspect_container(&id, None::<InspectContainerOptions>)
                    .await
            })
            .await?;
        Ok(info
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(PROJECT_LABEL).cloned()))
    }

    async fn events(
        &self,
        project: &str,
    ) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        let docker = self.client().await?;
        let opts = EventsOptionsBuilder::new()
            .filters(&event_filter(project))
            .build();
        let project = project.to_string();
        let stream = docker
            .events(Some(opts))
            .filter_map(move |ev| {
                let project = project.clone();
                async move {
                    match ev {
                        Err(e) => Some(Err(map_err(e))),
                        Ok(msg) => to_event(&project, msg).map(Ok),
                    }
                }
            })
            .boxed();
        Ok(stream)
    }

    async fn history(
        &self,
        project: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<RuntimeEvent>, RuntimeError> {
        let stamp =
            |t: DateTime<Utc>| format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
        let opts = EventsOptionsBuilder::new()
            .since(&stamp(since))
            .until(&stamp(until.max(since)))
            .filters(&event_filter(project))
            .build();
        let project = project.to_string();
        self.call(|d| async move {
            let mut stream = d.events(Some(opts));
            let mut out = Vec::new();
            // The daemon holds a few hundred events at most; bounded all the same.
            while let Some(msg) = stream.next().await {
                if let Some(ev) = to_event(&project, msg?) {
                    out.push(ev);
                    if out.len() >= MAX_HISTORY {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

/// The container events the agent follows, of one compose project.
fn event_filter(project: &str) -> HashMap<String, Vec<String>> {
    let mut filters = label_filter(project, None);
    filters.insert("type".into(), vec!["container".into()]);
    filters.insert(
        "event".into(),
        ["die", "oom", "health_status", "stop", "pause", "kill"]
            .map(String::from)
            .to_vec(),
    );
    filters
}

fn to_event(project: &str, msg: EventMessage) -> Option<RuntimeEvent> {
    let action = msg.action?;
    let kind = match action.as_str() {
        "die" => EventKind::Die,
        "oom" => EventKind::Oom,
        "stop" => EventKind::Stop,
        "pause" => EventKind::Pause,
        "kill" => EventKind::Kill {
            signal: msg
                .actor
                .as_ref()
                .and_then(|a| a.attributes.as_ref())
                .and_then(|a| a.get("signal"))
                .and_then(|s| s.parse().ok()),
        },
        a if a.starts_with("health_status") && a.ends_with("unhealthy") => EventKind::Unhealthy,
        _ => return None,
    };
    let actor = msg.actor?;
    let attrs = actor.attributes.unwrap_or_default();
    if attrs.get(PROJECT_LABEL).map(String::as_str) != Some(project) {
        return None;
    }
    let time = msg
        .time_nano
        .map(|n| Utc.timestamp_nanos(n))
        .or_else(|| msg.time.and_then(|s| Utc.timestamp_opt(s, 0).single()))
        .unwrap_or_else(Utc::now);
    Some(RuntimeEvent {
        kind,
        container: ContainerRef {
            id: actor.id?,
            name: attrs.get("name").cloned().unwrap_or_default(),
            project: project.to_string(),
            service: attrs.get(SERVICE_LABEL).cloned()?,
            labels: our_labels(&attrs),
        },
        exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
        time,
    })
}
