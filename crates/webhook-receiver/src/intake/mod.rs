//! The HTTP intake: the Alertmanager webhook and the agent's own read endpoints.

pub mod alert;
mod webhook;

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub use webhook::WebhookError;

use crate::engine::Engine;
use crate::incidents::IncidentStore;
use crate::metrics::Metrics;
use crate::secret::Secret;

/// What the agent may do with Docker, from its start-up self-test (kept current).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerAccess {
    /// Not checked yet.
    Unknown,
    /// It can list, inspect and act on the containers it heals.
    Ok,
    /// It can look but not act (a proxy refuses starts): it diagnoses, it cannot heal.
    ReadOnly(String),
    /// Docker is unreachable or refuses to list/inspect.
    Missing(String),
}

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub metrics: Metrics,
    pub incidents: Arc<IncidentStore>,
    pub token: Option<Secret>,
    pub max_body: usize,
    pub docker: Arc<Mutex<DockerAccess>>,
    pub dry_run: bool,
    pub docker_events: bool,
    /// Configuration a human should fix (said at start, and here).
    pub warnings: Arc<Vec<String>>,
}

impl AppState {
    /// The request carries the bearer token (or no token is configured).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        token.matches(given)
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhook", webhook::route(&state))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/incidents", get(incidents))
        .route("/reset", post(reset))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(State(s): State<AppState>) -> Json<serde_json::Value> {
    let docker = s.docker.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let llm = s
        .engine
        .strategy()
        .describe()
        .map(|(provider, model)| json!({ "provider": provider, "model": model }));
    let mut warnings: Vec<String> = s.warnings.as_ref().clone();
    let (access, reachable) = match &docker {
        DockerAccess::Unknown => ("unknown", false),
        DockerAccess::Ok => ("ok", true),
        DockerAccess::ReadOnly(why) => {
            warnings.push(format!("docker access is read-only: {why}"));
            ("read_only", true)
        }
        DockerAccess::Missing(why) => {
            warnings.push(format!("docker access is missing: {why}"));
            ("missing", false)
        }
    };
    Json(json!({
        "status": if docker == DockerAccess::Ok { "ok" } else { "degraded" },
        "docker": if reachable { "reachable" } else { "unreachable" },
        "docker_access": access,
        "webhook_auth": if s.token.is_some() { "on" } else { "off" },
        "warnings": warnings,
        "project": s.engine.scope().project(),
        "services": s.engine.scope().services().collect::<Vec<_>>(),
        "mode": s.engine.strategy().mode(),
        "llm": llm,
        "dry_run": s.dry_run,
        "docker_events": s.docker_events,
        "healing": s.engine.busy(),
    }))
}

#[derive(Deserialize)]
struct ResetQuery {
    replica: Option<String>,
}

/// `POST /reset?replica=NAME`: an operator forgets a replica's restart budget and escalation
/// history (after fixing what made the agent give up), and the agent looks again.
async fn reset(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ResetQuery>,
) -> Response {
    if !s.authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "missing or wrong bearer token" })),
        )
            .into_response();
    }
    let Some(replica) = q.replica.filter(|r| !r.trim().is_empty() && r.len() <= 256) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "name the replica: POST /reset?replica=<container name>" })),
        )
            .into_response();
    };
    let forgotten = s.engine.reset(replica.trim());
    tracing::info!(replica = %crate::tools::guard_bounded(&replica, 128), forgotten, "operator reset");
    Json(json!({ "reset": replica.trim(), "forgotten": forgotten })).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct IncidentsQuery {
    limit: Option<String>,
}

async fn incidents(State(s): State<AppState>, Query(q): Query<IncidentsQuery>) -> Response {
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 50,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "limit must be a whole number from 1 to 1000" })),
            )
                .into_response()
        }
    };
    Json(s.incidents.recent(limit)).into_response()
}
