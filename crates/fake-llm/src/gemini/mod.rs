//! A fake Gemini `generateContent` endpoint.
//!
//! It requires the key in `x-goog-api-key` (a `?key=` query is refused: it leaks into logs), checks
//! the request the way the real API does ([`validate`]), and answers in the real response format:
//! the first `functionCall` part of each turn carries a `thoughtSignature` that must come back
//! unchanged, errors are `{"error": {code, message, status, details}}`, a 429 carries `RetryInfo`.

mod generation;
mod validate;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::script::{Reply, Script};
use crate::server::{Log, Payload, Recorded, Running};
use validate::Signer;

/// Who decides the replies.
#[derive(Debug, Clone)]
pub enum Brain {
    /// Scripted replies, one per valid request.
    Script(Script),
    /// Reads the conversation and heals: see [`crate::healer`].
    Healer,
    /// Heals like a real model, mistakes included: see [`crate::realistic`].
    Realistic(crate::realistic::Realistic),
}

#[derive(Debug, Clone)]
pub struct GeminiOptions {
    /// The key required in `x-goog-api-key`; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Give each `functionCall` an `id` (newer API behaviour); the answer must then carry it.
    pub call_ids: bool,
    /// Base latency of every answer.
    pub latency: Duration,
}

impl Default for GeminiOptions {
    fn default() -> Self {
        GeminiOptions {
            api_key: Some(FakeGemini::API_KEY.into()),
            call_ids: false,
            latency: Duration::ZERO,
        }
    }
}

struct Shared {
    brain: Brain,
    options: GeminiOptions,
    signer: Signer,
    scripted: AtomicUsize,
    turns: AtomicUsize,
    log: Log,
}

/// A fake Gemini on `127.0.0.1:<random port>`, stopped when dropped.
pub struct FakeGemini {
    url: String,
    shared: Arc<Shared>,
    _running: Running,
}

impl FakeGemini {
    /// The key [`FakeGemini::start`] requires.
    pub const API_KEY: &'static str = "fake-gemini-test-key";

    /// Scripted replies, [`FakeGemini::API_KEY`] required, no call ids.
    pub async fn start(script: Script) -> FakeGemini {
        Self::start_with(Brain::Script(script), GeminiOptions::default()).await
    }

    pub async fn start_with(brain: Brain, options: GeminiOptions) -> FakeGemini {
        let shared = shared(brain, options);
        let running = Running::loopback(routes(shared.clone())).await;
        FakeGemini {
            url: format!("http://{}", running.addr),
            shared,
            _running: running,
        }
    }

    /// The base URL, to use as `GEMINI_BASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.all()
    }

    /// The `generateContent` requests that were answered 200.
    pub fn answered(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 200)
            .collect()
    }
}

fn shared(brain: Brain, options: GeminiOptions) -> Arc<Shared> {
    Arc::new(Shared {
        brain,
        options,
        signer: Signer::new(),
        scripted: AtomicUsize::new(0),
        turns: AtomicUsize::new(0),
        log: Log::default(),
    })
}

/// The router, for serving on a listener of your own (the `fake-gemini` binary).
pub fn router(brain: Brain, options: GeminiOptions) -> Router {
    routes(shared(brain, options))
}

fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1beta/models/{model_action}", post(generate_content))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared)
}

async fn generate_content(
    State(shared): State<Arc<Shared>>,
    Path(model_action): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api_key = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let (status, response, extra_delay) = answer(
        &shared,
        &model_action,
        query.as_deref(),
        api_key.as_deref(),
        parsed.as_ref(),
    )
    .await;
    tokio::time::sleep(shared.options.latency + extra_delay).await;
    shared.log.push(Recorded {
        path: format!("/v1beta/models/{model_action}"),
        query,
        api_key,
        body: parsed.unwrap_or(Value::Null),
        status: status.as_u16(),
        response: response.recorded(),
    });
    response.into_response(status)
}

async fn answer(
    shared: &Shared,
    model_action: &str,
    query: Option<&str>,
    api_key: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Payload, Duration) {
    let fail = |code: u16, status: &str, message: &str| {
        (
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            Payload::Json(error_body(code, status, message, vec![])),
            Duration::ZERO,
        )
    };
    if query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("key="))) {
        return fail(400, "INVALID_ARGUMENT", "fake-gemini: the API key must travel in the x-goog-api-key header, not in ?key= (it would leak into access logs).");
    }
    match (api_key, &shared.options.api_key) {
        (None, _) | (Some(""), _) => {
            return fail(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.")
        }
        (Some(got), Some(want)) if got != want => {
            let details = vec![json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}})];
            return (StatusCode::BAD_REQUEST, Payload::Json(error_body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", details)), Duration::ZERO);
        }
        _ => {}
    }
    let Some((model, "generateContent")) = model_action.split_once(':') else {
        return fail(404, "NOT_FOUND", &format!("models/{model_action} is not found for API version v1beta, or is not supported for generateContent."));
    };
    let Some(body) = body else {
        return fail(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unexpected token.",
        );
    };
    if let Err(message) = validate::check_request(model, body, &shared.signer) {
        return fail(400, "INVALID_ARGUMENT", &message);
    }

    let (reply, delay) = match &shared.brain {
        Brain::Healer => (crate::healer::next_reply(body), Duration::ZERO),
        Brain::Realistic(brain) => (brain.next_reply(body), Duration::ZERO),
        Brain::Script(script) => {
            let n = shared.scripted.fetch_add(1, Ordering::SeqCst);
            match script.step(n) {
                Some(step) => (step.reply.clone(), step.delay),
                None => {
                    return fail(
                        500,
                        "INTERNAL",
                        &format!("fake-gemini: the script has no reply for request {}", n + 1),
                    )
                }
            }
        }
    };
    let (status, value) = match reply {
        Reply::Raw {
            status,
            content_type,
            body,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, Payload::Raw { content_type, body }, delay);
        }
        Reply::Text(text) => (
            StatusCode::OK,
            shared.model_response(model, body, vec![json!({"text": text})], false),
        ),
        Reply::Calls(calls) => {
            let turn = shared.turns.fetch_add(1, Ordering::SeqCst);
            let mut parts = Vec::new();
            for (i, c) in calls.iter().enumerate() {
                let args: Value = match serde_json::from_str(&c.arguments) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        return fail(
                            500,
                            "INTERNAL",
                            "fake-gemini: scripted Gemini call arguments must be a JSON object",
                        )
                    }
                };
                let mut fc = json!({"name": c.name, "args": args});
                if shared.options.call_ids {
                    fc["id"] = json!(format!("fc-{turn}-{i}"));
                }
                parts.push(json!({ "functionCall": fc }));
            }
            (
                StatusCode::OK,
                shared.model_response(model, body, parts, true),
            )
        }
        Reply::RateLimited { retry_delay } => {
            let mut details = vec![json!({
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaDimensions": {"location": "global", "model": model}, "quotaValue": "10"}]
            })];
            if let Some(d) = retry_delay {
                details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format_proto_duration(d)}));
            }
            let body = error_body(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.", details);
            (StatusCode::TOO_MANY_REQUESTS, body)
        }
        Reply::Error { code, message } => {
            let (status, default) = match code {
                500 => ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
                503 => ("UNAVAILABLE", "The model is overloaded. Please try again later."),
                504 => ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
                404 => ("NOT_FOUND", "Requested entity was not found."),
                403 => ("PERMISSION_DENIED", "The caller does not have permission"),
                429 => ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
                _ => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
            };
            let message = if message.is_empty() {
                default.to_string()
            } else {
                message
            };
            let code_status =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code_status, error_body(code, status, &message, vec![]))
        }
    };
    (status, Payload::Json(value), delay)
}

impl Shared {
    /// A 200 response: the parts signed (signature on the first part), usage estimated from sizes.
    fn model_response(
        &self,
        model: &str,
        request: &Value,
        mut parts: Vec<Value>,
        calls: bool,
    ) -> Value {
        let signature = self.signer.sign(&parts);
        // A turn with nothing in it (a scripted `Calls(vec![])`) comes back as the API sends an
        // empty turn: a content without parts, and nothing to sign.
        let content = match parts.first_mut() {
            Some(first) => {
                first["thoughtSignature"] = json!(signature);
                json!({"parts": parts, "role": "model"})
            }
            None => json!({"role": "model"}),
        };
        let prompt_tokens = request.to_string().len() / 4 + 1;
        let output_tokens = Value::Array(parts.clone()).to_string().len() / 4 + 1;
        let thoughts = if calls { 24 } else { 12 };
        json!({
            "candidates": [{
                "content": content,
                "finishReason": "STOP",
                "index": 0
            }],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": output_tokens,
                "totalTokenCount": prompt_tokens + output_tokens + thoughts,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
                "thoughtsTokenCount": thoughts
            },
            "modelVersion": model,
            "responseId": format!("fake-{}", self.log.all().len())
        })
    }
}

fn error_body(code: u16, status: &str, message: &str, details: Vec<Value>) -> Value {
    let mut error = json!({"code": code, "message": message, "status": status});
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    json!({ "error": error })
}

/// `Duration` as protobuf JSON: `"47s"`, `"1.5s"`.
fn format_proto_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}
