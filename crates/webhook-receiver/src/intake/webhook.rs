//! `POST /webhook`: authenticate, check, parse, hand triggers to the engine, answer at once.
//!
//! The body limit is tower-http's `RequestBodyLimitLayer`: a `Content-Length` over the limit is
//! refused before the body is read, a streamed body is cut off at the limit. Either way the answer
//! is 413 with this module's JSON error. Any other failure to read the body (the client broke
//! off, malformed chunked encoding) is 400: the request was not complete, not too large.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::Json;
use chrono::Utc;
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;

use super::alert::WebhookPayload;
use super::AppState;
use crate::engine::OutOfScopeAlert;
use crate::incidents::{TriggerKind, TriggerRecord};
use crate::text::bounded;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("content type must be application/json, got {0:?}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("not an Alertmanager webhook: {0}")]
    NotAWebhook(String),
    #[error("unsupported webhook version {0:?} (expected \"4\")")]
    UnsupportedVersion(String),
}

impl WebhookError {
    fn metric(&self) -> &'static str {
        match self {
            WebhookError::Unauthorized => "unauthorized",
            WebhookError::UnsupportedMediaType(_) => "unsupported_media_type",
            WebhookError::PayloadTooLarge(_) => "payload_too_large",
            _ => "bad_request",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            WebhookError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebhookError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebhookError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), Json(json!({ "error": self.to_string() }))).into_response();
        if let WebhookError::Unauthorized = self {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
        }
        resp
    }
}

/// The `/webhook` route with its body limit (`WEBHOOK_MAX_BYTES`).
pub fn route(state: &AppState) -> MethodRouter<AppState> {
    post(receive)
        .layer(RequestBodyLimitLayer::new(state.max_body))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            json_413,
        ))
}

/// The limit layer refuses an oversized `Content-Length` with a plain-text 413 of its own, before
/// the handler runs: answer and count it as every other refusal.
async fn json_413(State(state): State<AppState>, response: Response) -> Response {
    let from_layer = response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|ct| ct.as_bytes().starts_with(b"text/plain"));
    if !from_layer {
        return response;
    }
    refused(&state, WebhookError::PayloadTooLarge(state.max_body))
}

fn refused(state: &AppState, e: WebhookError) -> Response {
    state
        .metrics
        .webhooks_received
        .with_label_values(&[e.metric()])
        .inc();
    tracing::warn!(error = %e, "webhook rejected");
    e.into_response()
}

pub async fn receive(State(state): State<AppState>, req: Request<Body>) -> Response {
    match handle(&state, req).await {
        Ok(body) => {
            state
                .metrics
                .webhooks_received
                .with_label_values(&["accepted"])
                .inc();
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) => refused(&state, e),
    }
}

async fn handle(state: &AppState, req: Request<Body>) -> Result<serde_json::Value, WebhookError> {
    if !state.webhook_open && !state.authorized(req.headers()) {
        return Err(WebhookError::Unauthorized);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" {
        return Err(WebhookError::UnsupportedMediaType(bounded(
            &content_type,
            100,
        )));
    }
    // The layer already limits the body; the limit here only guards a router built without it.
    let bytes = to_bytes(req.into_body(), state.max_body)
        .await
        .map_err(|e| body_error(e, state.max_body))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| WebhookError::MalformedJson(e.to_string()))?;
    let payload: WebhookPayload =
        serde_json::from_value(value).map_err(|e| WebhookError::NotAWebhook(e.to_string()))?;
    if payload.version != "4" {
        return Err(WebhookError::UnsupportedVersion(bounded(
            &payload.version,
            20,
        )));
    }

    let (mut triggered, mut ignored, mut resolved) = (Vec::new(), 0usize, 0usize);
    let mut not_ours = Vec::new();
    for alert in &payload.alerts {
        if !alert.is_firing() {
            resolved += 1;
            tracing::info!(alert = %bounded(alert.name(), 100), fingerprint = %bounded(&alert.fingerprint, 40), "alert resolved (recorded, no action)");
            continue;
        }
        let service = alert.service().unwrap_or("");
        let trigger = TriggerRecord {
            kind: TriggerKind::Alert,
            name: bounded(alert.name(), 100),
            at: alert
                .starts_at
                .filter(|t| t.timestamp() > 0)
                .unwrap_or_else(Utc::now),
            container: None,
            summary: alert.summary().map(|s| bounded(s, 500)),
        };
        let other_project = alert
            .project()
            .filter(|p| *p != state.engine.scope().project());
        if let Some(p) = other_project {
            ignored += 1;
            not_ours.push(out_of_scope(
                service,
                trigger,
                format!("the alert is about project {:?}", bounded(p, 100)),
            ));
        } else if state.engine.trigger(service, trigger.clone()) {
            if !triggered.contains(&service.to_string()) {
                triggered.push(service.to_string());
            }
        } else {
            ignored += 1;
            let why = if service.is_empty() {
                "the alert names no service".to_string()
            } else {
                format!("the alert is about service {:?}", bounded(service, 100))
            };
            not_ours.push(out_of_scope(service, trigger, why));
        }
    }
    if !not_ours.is_empty() {
        tracing::info!(
            alerts = not_ours.len(),
            "alerts outside this agent's scope; recorded (grouped, once), nothing touched"
        );
        // Inline, no task per alert: grouped, deduplicated and rate limited by the engine.
        state.engine.out_of_scope(not_ours).await;
    }
    tracing::info!(status = %bounded(&payload.status, 20), alerts = payload.alerts.len(), triggered = ?triggered, ignored, resolved, "alertmanager webhook accepted");
    Ok(
        json!({ "status": "accepted", "triggered": triggered, "ignored": ignored, "resolved": resolved }),
    )
}

/// 413 only when the body really went past the limit; any other read failure is 400.
fn body_error(e: axum::Error, max: usize) -> WebhookError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return WebhookError::PayloadTooLarge(max);
        }
        source = err.source();
    }
    WebhookError::BodyRead(bounded(&e.to_string(), 200))
}

/// An alert that is not this agent's: the service it names and why.
fn out_of_scope(service: &str, trigger: TriggerRecord, why: String) -> OutOfScopeAlert {
    let named = if service.is_empty() {
        "(none)".to_string()
    } else {
        bounded(service, 100)
    };
    OutOfScopeAlert {
        named,
        why,
        trigger,
    }
}
