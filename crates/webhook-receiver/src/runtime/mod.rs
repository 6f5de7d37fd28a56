//! The container runtime seam: what the healing engine and the tools may ask of Docker.
//!
//! The engine and tools only see [`ContainerRuntime`]; [`docker`] is the one bollard implementation
//! (the tests' in-memory one lives in the `test-support` crate).
//! Nothing here knows about LLMs, and nothing here decides *whether* a container may be touched:
//! that is [`crate::scope`]'s job, checked before any call reaches this layer.

pub mod docker;
pub mod socket_access;

use std::collections::BTreeMap;
use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use serde::Serialize;

/// Labels of ours a container may carry (compose `labels:`), e.g. `healstack.action`.
pub const LABEL_PREFIX: &str = "healstack.";

/// One container as listed (cheap), before inspection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerRef {
    pub id: String,
    /// Container name without the leading `/`.
    pub name: String,
    pub project: String,
    pub service: String,
    /// Only the labels starting with [`LABEL_PREFIX`]: what the operator tells the agent.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Docker's `State.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    Unknown,
}

/// Docker's `State.Health.Status`; `None` on the replica means "no healthcheck".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// The live state of one replica, from an inspect (and optionally a stats call).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaState {
    pub container: ContainerRef,
    pub status: Status,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub health: Option<Health>,
    pub restart_count: i64,
    /// When a healthcheck first passed after the container last started (Docker keeps the last
    /// five probe results: when the first pass after the start has aged out of that log, the
    /// start itself). `None`: it never passed one in this life, or it has no healthcheck.
    pub healthy_since: Option<DateTime<Utc>>,
    /// The last healthcheck results, oldest first (bounded output).
    pub health_log: Vec<HealthProbe>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Configured memory limit in bytes (0 or None = unlimited).
    pub memory_limit: Option<u64>,
    /// Current memory use in bytes, when a stats call was made and the container runs.
    pub memory_usage: Option<u64>,
    /// An address on one of its networks, for the agent's own probe of the replica.
    pub ip: Option<IpAddr>,
}

/// One healthcheck result as Docker records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthProbe {
    pub start: Option<DateTime<Utc>>,
    pub exit_code: Option<i64>,
    /// The probe's output, bounded.
    pub output: String,
}

impl ReplicaState {
    /// Not running: exited or dead.
    pub fn is_exited(&self) -> bool {
        matches!(self.status, Status::Exited | Status::Dead)
    }

    /// Serving as far as Docker can tell: running, and healthy where a healthcheck exists.
    pub fn is_serving(&self) -> bool {
        self.status == Status::Running && matches!(self.health, None | Some(Health::Healthy))
    }

    /// How long its last life lasted (until now while it runs).
    pub fn uptime(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        let start = self.started_at?;
        let end = if self.status == Status::Running {
            now
        } else {
            self.finished_at?
        };
        Some((end - start).max(chrono::Duration::zero()))
    }

    /// How long it was running and healthy before it failed (until now while it runs): from
    /// its first passing healthcheck, or from its start when it has no healthcheck.
    pub fn healthy_for(&self, now: DateTime<Utc>, has_healthcheck: bool) -> chrono::Duration {
        let since = if has_healthcheck {
            self.healthy_since
        } else {
            self.started_at
        };
        let end = if self.status == Status::Running {
            Some(now)
        } else {
            self.finished_at
        };
        match (since, end) {
            (Some(s), Some(e)) => (e - s).max(chrono::Duration::zero()),
            _ => chrono::Duration::zero(),
        }
    }

    /// Whether Docker runs a healthcheck for it (it reported a health status or results).
    pub fn has_healthcheck(&self) -> bool {
        self.health.is_some() || !self.health_log.is_empty()
    }
}

/// What a container event means for healing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EventKind {
    Die,
    Oom,
    Unhealthy,
    /// `docker stop` / `docker compose stop`: the container was asked to stop.
    Stop,
    /// A signal sent to the container; `docker stop` begins with SIGTERM (`signal` 15).
    Kill {
        signal: Option<i64>,
    },
    /// `docker pause`: requests to it hang from now on.
    Pause,
}

/// A container event from the runtime's event stream, already reduced to what the engine needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuntimeEvent {
    pub kind: EventKind,
    pub container: ContainerRef,
    pub exit_code: Option<i64>,
    pub time: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("docker is unreachable: {0}")]
    Unreachable(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("docker refused the request: {0}")]
    Api(String),
    /// The agent may not use the Docker socket (EACCES), or it is not there: a deployment fault
    /// that retrying will not fix; the message names the cause and the fix.
    #[error("the agent cannot use the Docker socket: {0}")]
    Denied(String),
}

impl RuntimeError {
    /// Errors that mean "the daemon is gone" rather than "this request was wrong".
    pub fn is_connection(&self) -> bool {
        matches!(self, RuntimeError::Unreachable(_) | RuntimeError::Denied(_))
    }
}

/// What the agent may ask of a container runtime. Implementations do not check scope.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Is the daemon reachable right now?
    async fn ping(&self) -> Result<(), RuntimeError>;
    /// Every container (running or not) carrying the compose labels of `project` and `service`.
    async fn list(&self, project: &str, service: &str) -> Result<Vec<ContainerRef>, RuntimeError>;
    /// Live state of one container; `with_stats` adds a one-shot memory reading when it runs.
    async fn inspect(
        &self,
        container: &ContainerRef,
        with_stats: bool,
    ) -> Result<ReplicaState, RuntimeError>;
    /// Memory in use by a running container, from one stats reading (Docker answers it at its
    /// next collection, up to a second later); `None` when it does not run or has no reading.
    async fn memory(&self, container: &ContainerRef) -> Result<Option<u64>, RuntimeError>;
    // Containers are addressed by their compose name (`ContainerRef::name`): the socket proxy
    // checks a call's scope on the name (`<project>-<service>-<n>`) and refuses ids.
    /// Start a stopped container.
    async fn start(&self, name: &str) -> Result<(), RuntimeError>;
    /// Restart a running container (stop with `timeout_secs`, then start).
    async fn restart(&self, name: &str, timeout_secs: u32) -> Result<(), RuntimeError>;
    /// Stop a running container gracefully: SIGTERM, then SIGKILL after `timeout_secs` (the
    /// agent's recycling of a replica).
    async fn stop(&self, name: &str, timeout_secs: u32) -> Result<(), RuntimeError>;
    /// Unpause a paused container.
    async fn unpause(&self, name: &str) -> Result<(), RuntimeError>;
    /// The last `lines` lines of stdout+stderr.
    async fn logs_tail(&self, name: &str, lines: usize) -> Result<String, RuntimeError>;
    /// Whether the agent may change containers at all, without changing any: asks to start
    /// `<project>-<service>-0`, a replica compose never creates. `Ok(false)` when the daemon
    /// (or a proxy in front of it) refuses writes: the agent can diagnose, not heal.
    async fn can_act(&self, project: &str, service: &str) -> Result<bool, RuntimeError>;
    /// The compose project label of a container (used to find the agent's own project).
    async fn compose_project_of(&self, container: &str) -> Result<Option<String>, RuntimeError>;
    /// Container events of `project` (die, oom, unhealthy, stop, pause). The stream ends when the
    /// daemon goes away.
    async fn events(
        &self,
        project: &str,
    ) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError>;
    /// The container events of `project` (the same kinds) that the daemon still holds between
    /// `since` and `until`: a finite list. The daemon keeps recent events in memory only, so after
    /// a daemon restart the older ones are gone (see [`crate::stops`]).
    async fn history(
        &self,
        project: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<RuntimeEvent>, RuntimeError>;
}

impl RuntimeEvent {
    /// Someone asked the container to stop: a `stop` event, or the SIGTERM `docker stop` begins
    /// with.
    pub fn is_stop_request(&self) -> bool {
        matches!(
            self.kind,
            EventKind::Stop | EventKind::Kill { signal: Some(15) }
        )
    }
}
