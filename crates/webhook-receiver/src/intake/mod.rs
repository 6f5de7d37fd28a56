//! The HTTP intake: the Alertmanager webhook and the agent's own read endpoints.

pub mod alert;
mod webhook;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub use webhook::WebhookError;

use crate::engine::Engine;
use crate::incidents::IncidentStore;
use crate::metrics::Metrics;
use crate::secret::Secret;

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub metrics: Metrics,
    pub incidents: Arc<IncidentStore>,
    pub token: Option<Secret>,
    pub max_body: usize,
    pub docker_up: Arc<AtomicBool>,
    pub dry_run: bool,
    pub docker_events: bool,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhook", webhook::route(&state))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/incidents", get(incidents))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(State(s): State<AppState>) -> Json<serde_json::Value> {
    let docker = s.docker_up.load(Ordering::Relaxed);
    let llm = s
        .engine
        .strategy()
        .describe()
        .map(|(provider, model)| json!({ "provider": provider, "model": model }));
    Json(json!({
        "status": if docker { "ok" } else { "degraded" },
        "docker": if docker { "reachable" } else { "unreachable" },
        "project": s.engine.scope().project(),
        "services": s.engine.scope().services().collect::<Vec<_>>(),
        "mode": s.engine.strategy().mode(),
        "llm": llm,
        "dry_run": s.dry_run,
        "docker_events": s.docker_events,
        "healing": s.engine.busy(),
    }))
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
