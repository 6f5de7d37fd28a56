//! The container runtime seam: what the healing engine and the tools may ask of Docker.
//!
//! The engine and tools only see [`ContainerRuntime`]; [`docker`] is the one bollard implementation.
//! Nothing here knows about LLMs, and nothing here decides *whether* a container may be touched:
//! that is [`crate::scope`]'s job, checked before any call reaches this layer.

pub mod docker;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use serde::Serialize;

/// One container as listed (cheap), before inspection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerRef {
    pub id: String,
    /// Container name without the leading `/`.
    pub name: String,
    pub project: String,
    pub service: String,
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
    /// A healthcheck passed since the container last started: it came up and served, so dying
    /// afterwards is not a crash loop.
    pub became_healthy: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Configured memory limit in bytes (0 or None = unlimited).
    pub memory_limit: Option<u64>,
    /// Current memory use in bytes, when a stats call was made and the container runs.
    pub memory_usage: Option<u64>,
}

impl ReplicaState {
    /// Down in a way the agent heals: not running (exited, dead, created) or running but unhealthy.
    pub fn needs_healing(&self) -> bool {
        match self.status {
            Status::Exited | Status::Dead | Status::Created => true,
            Status::Running => self.health == Some(Health::Unhealthy),
            Status::Paused | Status::Restarting | Status::Removing | Status::Unknown => false,
        }
    }

    /// Exited because it was asked to ([`is_requested_stop`]) and not OOM-killed.
    pub fn stopped_on_purpose(&self) -> bool {
        self.status == Status::Exited && !self.oom_killed && is_requested_stop(self.exit_code)
    }

    /// Serving as far as Docker can tell: running, and healthy where a healthcheck exists.
    pub fn is_serving(&self) -> bool {
        self.status == Status::Running && matches!(self.health, None | Some(Health::Healthy))
    }
}

/// Exit 0, or 143 (SIGTERM, as `docker stop` sends): the container was asked to stop. An OOM
/// kill or `docker kill` (137) or a crash (any other code) was not.
pub fn is_requested_stop(exit_code: Option<i64>) -> bool {
    matches!(exit_code, Some(0) | Some(143))
}

/// What a container event means for healing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Die,
    Oom,
    Unhealthy,
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
}

impl RuntimeError {
    /// Errors that mean "the daemon is gone" rather than "this request was wrong".
    pub fn is_connection(&self) -> bool {
        matches!(self, RuntimeError::Unreachable(_))
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
    /// Start a stopped container.
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// Restart a running container (stop with `timeout_secs`, then start).
    async fn restart(&self, id: &str, timeout_secs: u32) -> Result<(), RuntimeError>;
    /// The last `lines` lines of stdout+stderr.
    async fn logs_tail(&self, id: &str, lines: usize) -> Result<String, RuntimeError>;
    /// The compose project label of a container (used to find the agent's own project).
    async fn compose_project_of(&self, container: &str) -> Result<Option<String>, RuntimeError>;
    /// Container events of `project` (die, oom, unhealthy). The stream ends when the daemon goes away.
    async fn events(
        &self,
        project: &str,
    ) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError>;
}
