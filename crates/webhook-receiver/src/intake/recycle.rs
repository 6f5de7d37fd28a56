//! `POST /recycle/{service}`: a rolling restart for people (deploys, config changes), by the same
//! mechanism as preventive recycling: one replica at a time, each drained, started and healthy
//! before the next, never fewer than N-1 serving. The bearer token is required.
//!
//! Answers when the restart is over (seconds per replica): 200 with every replica's outcome,
//! 409 when a recycle in flight did not end within the verify timeout or the service cannot
//! keep serving through it, 404 for a service the agent does not heal.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;

pub(super) async fn recycle(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Response {
    if !s.authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "missing or wrong bearer token" })),
        )
            .into_response();
    }
    if s.engine.scope().service(&service).is_none() {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("{} is not a service this agent heals", crate::text::bounded(&service, 64)) })),
        )
            .into_response();
    }
    if s.dry_run {
        return (
            StatusCode::CONFLICT,
            Json(json!({ "error": "DRY_RUN is on: the agent changes nothing" })),
        )
            .into_response();
    }
    tracing::info!(service = %service, "operator rolling restart");
    // Runs to its end even if the caller goes away: a half-done rolling restart is worse.
    let engine = s.engine.clone();
    let task =
        tokio::spawn(async move { engine.rolling_restart(&service).await.map(|r| (service, r)) });
    match task.await {
        Ok(Ok((service, replicas))) => {
            let ok = replicas.iter().all(|r| r.ok);
            let code = if ok {
                StatusCode::OK
            } else {
                StatusCode::CONFLICT
            };
            (
                code,
                Json(json!({ "service": service, "recycled": ok, "replicas": replicas })),
            )
                .into_response()
        }
        Ok(Err(why)) => (StatusCode::CONFLICT, Json(json!({ "error": why }))).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": format!("the rolling restart ended abnormally: {e}") })),
        )
            .into_response(),
    }
}
