//! A fake OpenAI-compatible `POST /v1/chat/completions`.
//!
//! Bearer auth, the real response and error shapes, and the real check that every `tool_call_id`
//! of an assistant message is answered by a tool message before the conversation goes on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::script::{Reply, Script};
use crate::server::{Log, Payload, Recorded, Running};

struct Shared {
    script: Script,
    api_key: String,
    next: AtomicUsize,
    log: Log,
}

/// A fake OpenAI-compatible server on `127.0.0.1:<random port>`, stopped when dropped.
pub struct FakeOpenAi {
    url: String,
    shared: Arc<Shared>,
    _running: Running,
}

impl FakeOpenAi {
    pub const API_KEY: &'static str = "sk-fake-openai-test-key";

    pub async fn start(script: Script) -> FakeOpenAi {
        let shared = Arc::new(Shared {
            script,
            api_key: Self::API_KEY.into(),
            next: AtomicUsize::new(0),
            log: Log::default(),
        });
        let router = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .with_state(shared.clone());
        let running = Running::loopback(router).await;
        FakeOpenAi {
            url: format!("http://{}/v1", running.addr),
            shared,
            _running: running,
        }
    }

    /// The API base (with `/v1`), to use as `OPENAI_BASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.all()
    }
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let (status, response, retry_after, delay) = answer(&shared, token.as_deref(), parsed.as_ref());
    tokio::time::sleep(delay).await;
    shared.log.push(Recorded {
        path: "/v1/chat/completions".into(),
        query: None,
        api_key: token,
        body: parsed.unwrap_or(Value::Null),
        status: status.as_u16(),
        response: response.recorded(),
    });
    let mut resp = response.into_response(status);
    if let Some(secs) = retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

type Answer = (StatusCode, Payload, Option<u64>, std::time::Duration);

fn error(
    code: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    err_code: Option<&str>,
) -> Answer {
    let body =
        json!({"error": {"message": message, "type": kind, "param": param, "code": err_code}});
    (code, Payload::Json(body), None, std::time::Duration::ZERO)
}

fn answer(shared: &Shared, token: Option<&str>, body: Option<&Value>) -> Answer {
    if token != Some(shared.api_key.as_str()) {
        // The real API echoes a masked key here: clients must not pass this message on verbatim.
        // By characters: a token is whatever the client sent, not necessarily ASCII.
        let masked = token
            .map(|t| {
                let chars: Vec<char> = t.chars().collect();
                let head: String = chars.iter().take(3).collect();
                let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
                format!("{head}****{tail}")
            })
            .unwrap_or_default();
        return error(
            StatusCode::UNAUTHORIZED,
            &format!("Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        );
    }
    let Some(body) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            None,
            None,
        );
    };
    if let Err((message, param)) = check_request(body) {
        return error(
            StatusCode::BAD_REQUEST,
            &message,
            "invalid_request_error",
            param.as_deref(),
            None,
        );
    }
    let n = shared.next.fetch_add(1, Ordering::SeqCst);
    let Some(step) = shared.script.step(n) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "fake-openai: the script has no reply for this request",
            "server_error",
            None,
            None,
        );
    };
    let delay = step.delay;
    let model = body["model"].as_str().unwrap_or_default();
    let (status, value, retry_after) = match &step.reply {
        Reply::Text(text) => (
            StatusCode::OK,
            completion(n, model, body, json!(text), None),
            None,
        ),
        Reply::Calls(calls) => {
            let tool_calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, c)| json!({"id": format!("call_{n}_{i}"), "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                .collect();
            (
                StatusCode::OK,
                completion(n, model, body, Value::Null, Some(tool_calls)),
                None,
            )
        }
        Reply::RateLimited { retry_delay } => {
            let secs = retry_delay.map(|d| d.as_secs_f64());
            let hint = secs
                .map(|s| format!(" Please try again in {s}s."))
                .unwrap_or_default();
            let body = json!({"error": {
                "message": format!("Rate limit reached for requests on model {model}: Limit 3, Used 3, Requested 1.{hint}"),
                "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
            (
                StatusCode::TOO_MANY_REQUESTS,
                body,
                retry_delay.map(|d| d.as_secs().max(1)),
            )
        }
        Reply::Raw {
            status,
            content_type,
            body,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let raw = Payload::Raw {
                content_type: content_type.clone(),
                body: body.clone(),
            };
            return (status, raw, None, delay);
        }
        Reply::Error { code, message } => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = if message.is_empty() {
                "The server had an error while processing your request. Sorry about that!"
            } else {
                message.as_str()
            };
            let kind = if status.is_server_error() {
                "server_error"
            } else {
                "invalid_request_error"
            };
            (
                status,
                json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
                None,
            )
        }
    };
    (status, Payload::Json(value), retry_after, delay)
}

fn completion(
    n: usize,
    model: &str,
    request: &Value,
    content: Value,
    tool_calls: Option<Vec<Value>>,
) -> Value {
    let finish = if tool_calls.is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    let mut message =
        json!({"role": "assistant", "content": content, "refusal": null, "annotations": []});
    if let Some(calls) = tool_calls {
        message["tool_calls"] = Value::Array(calls);
    }
    let prompt = request.to_string().len() / 4 + 1;
    let output = message.to_string().len() / 4 + 1;
    json!({
        "id": format!("chatcmpl-fake{n}"),
        "object": "chat.completion",
        "created": 1_767_225_600u64 + n as u64,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output},
        "system_fingerprint": "fp_fake"
    })
}

/// The checks the real API makes on the messages; `Err((message, param))`.
fn check_request(body: &Value) -> Result<(), (String, Option<String>)> {
    if body["model"].as_str().is_none_or(str::is_empty) {
        return Err(("you must provide a model parameter".into(), None));
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return Err((
            "[] is too short - 'messages'".into(),
            Some("messages".into()),
        ));
    };
    let mut pending: Vec<String> = Vec::new();
    let mut pending_at = 0;
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role == "tool" {
            let id = m["tool_call_id"].as_str().unwrap_or("");
            if !pending.iter().any(|p| p == id) {
                return Err((
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.".into(),
                    Some(format!("messages.[{i}].role")),
                ));
            }
            if !(m["content"].is_string() || m["content"].is_array()) {
                return Err((
                    format!("Invalid type for 'messages[{i}].content'"),
                    Some(format!("messages.[{i}].content")),
                ));
            }
            pending.retain(|p| p != id);
            continue;
        }
        if !pending.is_empty() {
            return Err((
                format!(
                    "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                    pending.join(", ")
                ),
                Some(format!("messages.[{pending_at}].role")),
            ));
        }
        match role {
            "system" | "developer" | "user" => {}
            "assistant" => {
                if let Some(calls) = m["tool_calls"].as_array() {
                    pending = calls.iter().filter_map(|c| c["id"].as_str().map(str::to_string)).collect();
                    pending_at = i;
                }
            }
            other => {
                return Err((
                    format!("Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."),
                    Some(format!("messages[{i}].role")),
                ))
            }
        }
    }
    if !pending.is_empty() {
        return Err((
            format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                pending.join(", ")
            ),
            Some(format!("messages.[{pending_at}].role")),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unanswered_tool_calls_are_rejected() {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "a", "type": "function", "function": {"name": "x", "arguments": "{}"}}, {"id": "b", "type": "function", "function": {"name": "x", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "ok"}
        ]});
        let (msg, _) = check_request(&body).unwrap_err();
        assert!(msg.ends_with("did not have response messages: b"), "{msg}");
        let mut ok = body.clone();
        ok["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "tool", "tool_call_id": "b", "content": "ok"}));
        check_request(&ok).unwrap();
        let stray = json!({"model": "m", "messages": [{"role": "user", "content": "go"}, {"role": "tool", "tool_call_id": "z", "content": "x"}]});
        assert!(check_request(&stray).unwrap_err().0.contains("preceeding"));
    }
}
