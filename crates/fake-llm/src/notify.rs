//! A receiver for the agent's notifications (`NOTIFY_URL`), as a generic JSON endpoint or a
//! Slack incoming webhook would receive them: it records every POST and answers like Slack
//! (`200 ok`), so tests and the scenario benchmark can read what was sent.
//!
//! - `POST /notify` (any path but the two below): recorded; `200 ok`, or `503` for the first
//!   `fail_first` requests (to exercise the sender's retries).
//! - `GET /notifications`: everything recorded, oldest first, as a JSON array.
//! - `GET /healthz`: `ok`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

/// Notifications kept; the oldest are dropped first.
pub const MAX_KEPT: usize = 10_000;

/// One notification as received.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// Receive time, RFC 3339 with milliseconds.
    pub received_at: String,
    pub path: String,
    pub content_type: Option<String>,
    /// `json` (the agent's generic body), `slack` (`{"text": ...}`), or `other`.
    pub format: &'static str,
    /// The body parsed as JSON, or as a string when it was not JSON.
    pub body: Value,
    /// The status this receiver answered.
    pub status: u16,
}

#[derive(Default)]
struct Sink {
    kept: Mutex<VecDeque<Notification>>,
    received: AtomicUsize,
    fail_first: usize,
}

/// The receiver's routes; `fail_first` requests are answered 503 before it accepts any.
pub fn router(fail_first: usize) -> Router {
    let sink = Arc::new(Sink {
        fail_first,
        ..Sink::default()
    });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/notifications", get(list))
        .fallback(receive)
        .with_state(sink)
}

async fn list(State(sink): State<Arc<Sink>>) -> Json<Vec<Notification>> {
    Json(
        sink.kept
            .lock()
            .expect("sink lock")
            .iter()
            .cloned()
            .collect(),
    )
}

async fn receive(
    State(sink): State<Arc<Sink>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let n = sink.received.fetch_add(1, Ordering::SeqCst);
    let status = if n < sink.fail_first {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let parsed: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let format = if parsed.get("source").is_some() && parsed.get("event").is_some() {
        "json"
    } else if parsed.get("text").is_some_and(Value::is_string) {
        "slack"
    } else {
        "other"
    };
    let record = Notification {
        received_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        path: uri.path().to_string(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        format,
        body: parsed,
        status: status.as_u16(),
    };
    tracing::info!(path = %record.path, format, status = status.as_u16(), "notification received");
    let mut kept = sink.kept.lock().expect("sink lock");
    if kept.len() >= MAX_KEPT {
        kept.pop_front();
    }
    kept.push_back(record);
    let text = if status.is_success() {
        "ok"
    } else {
        "service unavailable"
    };
    (status, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_both_formats_and_fails_first_on_request() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(1)).await });
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/notify");
        let generic =
            serde_json::json!({"source": "healstack", "event": "escalated", "incident_id": "i-1"});
        let first = http.post(&url).json(&generic).send().await.unwrap();
        assert_eq!(first.status(), 503);
        let second = http.post(&url).json(&generic).send().await.unwrap();
        assert_eq!(second.status(), 200);
        assert_eq!(second.text().await.unwrap(), "ok");
        let slack = serde_json::json!({"text": "*gave up* on p-webapp-9"});
        http.post(format!("http://{addr}/hooks/T/B/X"))
            .json(&slack)
            .send()
            .await
            .unwrap();
        let got: Vec<Value> = http
            .get(format!("http://{addr}/notifications"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0]["status"], 503);
        assert_eq!(got[1]["format"], "json");
        assert_eq!(got[1]["body"]["event"], "escalated");
        assert_eq!(got[2]["format"], "slack");
        assert_eq!(got[2]["path"], "/hooks/T/B/X");
        assert!(got[2]["received_at"].as_str().unwrap().ends_with('Z'));
    }
}
