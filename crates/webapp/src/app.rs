//! The two routers: the app (`/`, `/health`) and the metrics listener (`/metrics`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::leak::Leak;
use crate::metrics::{Metrics, OTHER_ROUTE};

/// Shared by every request of one app.
#[derive(Clone)]
pub struct AppState {
    pub instance: Arc<str>,
    pub leak: Arc<Leak>,
    pub metrics: Metrics,
    /// `RESPONSE_DELAY`: how long every request but `/health` waits before it is answered (a
    /// test knob; zero by default).
    pub response_delay: Duration,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .fallback(not_found)
        // Every answer waits, 404s and 405s too (a POST must be in flight as long as a GET);
        // the healthcheck does not, so Docker's view of the replica stays what it was.
        .layer(middleware::from_fn_with_state(
            state.response_delay,
            delay_responses,
        ))
        // `layer`, not `route_layer`: unmatched paths must be counted too (as "other").
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            track_requests,
        ))
        .with_state(state)
}

pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
}

async fn index(State(state): State<AppState>) -> Response {
    let total = state.leak.leak_once();
    state.metrics.set_leaked_bytes(total);
    let instance = escape_html(&state.instance);
    let page = format!(
        "<!doctype html>\n<html><head><title>webapp</title></head><body>\n\
         <h1>Hello from {instance}</h1>\n\
         <p>This replica leaks {per_request} bytes per request and has leaked {total} bytes so far.</p>\n\
         </body></html>\n",
        per_request = state.leak.bytes_per_request(),
    );
    let mut response = Html(page).into_response();
    // Lets a load test through nginx see which replica answered without parsing HTML.
    if let Ok(value) = HeaderValue::from_str(&state.instance) {
        response.headers_mut().insert("x-served-by", value);
    }
    response
}

async fn health() -> &'static str {
    "ok\n"
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}

async fn render_metrics(State(metrics): State<Metrics>) -> Response {
    match metrics.render() {
        Ok(body) => ([(header::CONTENT_TYPE, Metrics::content_type())], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

async fn delay_responses(State(delay): State<Duration>, request: Request, next: Next) -> Response {
    if !delay.is_zero() && request.uri().path() != "/health" {
        tokio::time::sleep(delay).await;
    }
    next.run(request).await
}

/// Counts and times every request under its route pattern, so label values stay a
/// small fixed set whatever paths clients send.
async fn track_requests(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| OTHER_ROUTE.to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.observe_request(&route, status, elapsed);
    tracing::debug!(
        route,
        status,
        elapsed_ms = elapsed.as_secs_f64() * 1e3,
        "request"
    );
    response
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape_html("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        assert_eq!(escape_html("web-1"), "web-1");
    }
}
