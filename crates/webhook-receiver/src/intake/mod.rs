//! The HTTP intake: the Alertmanager webhook and the agent's own endpoints.
//!
//! Every endpoint needs the bearer token in its `Authorization` header, except those in
//! [`OPEN_PATHS`] (health and metrics, which carry nothing secret) and those in
//! [`SELF_CHECKED_PATHS`], which check it themselves: the webhook (so that `WEBHOOK_AUTH=none`
//! can open it alone) and the page (`GET /` also takes its login cookie; `POST /login` checks
//! the token given in the form). The cookie opens nothing that changes state. A route added
//! later is closed until listed there.

pub mod alert;
mod page;
mod recycle;
mod webhook;

use std::sync::{Arc, Mutex};

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
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
    /// The bearer token (configured, or generated: see [`crate::token`]).
    pub token: Secret,
    /// `WEBHOOK_AUTH=none`: `/webhook` takes alerts without the token.
    pub webhook_open: bool,
    pub max_body: usize,
    pub docker: Arc<Mutex<DockerAccess>>,
    pub dry_run: bool,
    pub docker_events: bool,
    /// Configuration a human should fix (said at start, and here).
    pub warnings: Arc<Vec<String>>,
}

impl AppState {
    /// The request carries the bearer token.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        self.token.matches(given)
    }
}

/// Paths served without the token (see the module's doc).
pub const OPEN_PATHS: &[&str] = &["/healthz", "/metrics"];

/// Requests whose handlers check the token themselves (see the module's doc): `POST /webhook`
/// the Bearer header unless `WEBHOOK_AUTH=none`; `GET /` the Bearer header or the login cookie
/// (a login form otherwise); `POST /login` the token in its form; `POST /logout` only clears
/// the cookie.
pub const SELF_CHECKED_PATHS: &[(&str, &str)] = &[
    ("POST", "/webhook"),
    ("GET", "/"),
    ("POST", "/login"),
    ("POST", "/logout"),
];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhook", webhook::route(&state))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/incidents", get(incidents))
        .route("/reset", post(reset))
        .route("/recycle/{service}", post(recycle::recycle))
        .merge(page::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Deny by default: 401 without the token, unless the path is open.
async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().as_str(), req.uri().path());
    if OPEN_PATHS.contains(&path)
        || SELF_CHECKED_PATHS.contains(&(method, path))
        || s.authorized(req.headers())
    {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(
            json!({ "error": "missing or wrong bearer token (webhook-receiver token prints it)" }),
        ),
    )
        .into_response()
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
    // Files the agent cannot write: it heals all the same, but what it did is not kept.
    let ctx = s.engine.context();
    let incident_log = s.incidents.fault();
    let budget = ctx.ledger.budget().fault();
    let stops = ctx.stops.fault();
    for fault in [&incident_log, &budget, &stops].into_iter().flatten() {
        warnings.push(format!(
            "{fault} (kept in memory only; the agent keeps healing)"
        ));
    }
    let storage_ok = incident_log.is_none() && budget.is_none() && stops.is_none();
    let as_status = |f: Option<String>| f.map_or("ok".to_string(), |f| format!("error: {f}"));
    // The service as well as the agent: replicas down or given up on, escalations open. Still
    // 200 (the agent's own container healthcheck reads this): the agent itself is fine.
    let service_health = s.engine.health();
    let service_ok = service_health.values().all(|h| !h.degraded());
    let ok = docker == DockerAccess::Ok && storage_ok && service_ok;
    Json(json!({
        "status": if ok { "ok" } else { "degraded" },
        "service_health": service_health,
        "storage": {
            "incident_log": as_status(incident_log),
            "restart_budget": as_status(budget),
            "stops": as_status(stops),
        },
        "docker": if reachable { "reachable" } else { "unreachable" },
        "docker_access": access,
        "webhook_auth": if s.webhook_open { "off" } else { "on" },
        "warnings": warnings,
        "project": s.engine.scope().project(),
        "services": s.engine.scope().services().collect::<Vec<_>>(),
        "mode": s.engine.strategy().mode(),
        "llm": llm,
        "dry_run": s.dry_run,
        "docker_events": s.docker_events,
        "healing": s.engine.busy(),
        "recycling": s.engine.recycling(),
    }))
}

#[derive(Deserialize)]
struct ResetQuery {
    replica: Option<String>,
}

/// `POST /reset?replica=NAME`: an operator forgets a replica's restart budget and escalation
/// history (after fixing what made the agent give up), and the agent looks again. (The token is
/// checked by [`require_token`].)
async fn reset(State(s): State<AppState>, Query(q): Query<ResetQuery>) -> Response {
    let Some(replica) = q.replica.filter(|r| !r.trim().is_empty() && r.len() <= 256) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "name the replica: POST /reset?replica=<container name>" })),
        )
            .into_response();
    };
    let forgotten = s.engine.reset(replica.trim());
    tracing::info!(replica = %crate::text::bounded(&replica, 128), forgotten, "operator reset");
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
    // Stored as JSON already: no incident is cloned or serialised per request.
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.incidents.recent_json(limit),
    )
        .into_response()
}
