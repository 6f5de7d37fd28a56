//! Provider-neutral conversation types, the [`ChatModel`] seam and [`LlmError`].
//!
//! Each provider converts these to and from its own wire structs at its edge. What a provider needs
//! echoed back unchanged (Gemini's `thoughtSignature` and any part it does not know) travels in
//! [`AssistantTurn::echo`], as the exact JSON text the provider received.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use serde_json::Value;

use super::ToolSpec;
pub use crate::secret::Secret;

/// One entry of the conversation history (the system prompt is passed separately).
#[derive(Debug, Clone)]
pub enum Message {
    User(String),
    Assistant(AssistantTurn),
    /// The answers to every call of the preceding assistant turn, in the order of the calls.
    ToolResults(Vec<ToolResult>),
}

/// What the model said in one turn.
#[derive(Debug, Clone, Default)]
pub struct AssistantTurn {
    /// Visible text (thought summaries excluded).
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    /// The provider's own JSON for this turn, exactly as received, echoed back verbatim in the next
    /// request by the provider that produced it. `None` for turns built by hand (tests).
    pub echo: Option<Box<RawValue>>,
}

/// A function call requested by the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Provider call id: always set by OpenAI-compatible servers, optional on Gemini.
    pub id: Option<String>,
    pub name: String,
    pub args: ToolArgs,
}

/// The arguments of a call: parsed JSON, or the raw text that failed to parse.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolArgs {
    Json(Value),
    Malformed { raw: String, error: String },
}

impl ToolArgs {
    /// Parses an OpenAI-style `arguments` string; an empty string means "no arguments".
    pub fn parse(raw: &str) -> Self {
        if raw.trim().is_empty() {
            return ToolArgs::Json(Value::Object(Default::default()));
        }
        match serde_json::from_str(raw) {
            Ok(v) => ToolArgs::Json(v),
            Err(e) => ToolArgs::Malformed {
                raw: raw.to_string(),
                error: e.to_string(),
            },
        }
    }

    /// The arguments as a JSON value for records: the parsed value, or the raw text as a string.
    pub fn to_value(&self) -> Value {
        match self {
            ToolArgs::Json(v) => v.clone(),
            ToolArgs::Malformed { raw, .. } => Value::String(raw.clone()),
        }
    }
}

/// The answer to one [`ToolCall`].
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub call_id: Option<String>,
    pub name: String,
    /// `Ok` is sent as `{"output": ...}`, `Err` as `{"error": ...}`.
    pub result: Result<Value, String>,
}

impl ToolResult {
    /// The JSON object the model receives.
    pub fn response_object(&self) -> Value {
        match &self.result {
            Ok(v) => serde_json::json!({ "output": v }),
            Err(e) => serde_json::json!({ "error": e }),
        }
    }
}

/// Token counts of one model response, from the provider's usage fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    /// Generated tokens, thinking tokens included where the provider reports them.
    pub output_tokens: u64,
}

/// One model response.
#[derive(Debug, Clone, Default)]
pub struct ModelTurn {
    pub turn: AssistantTurn,
    pub usage: Usage,
    /// The provider's finish reason, for logs (`STOP`, `tool_calls`, `MAX_TOKENS`...).
    pub finish_reason: Option<String>,
}

/// A chat model with function calling.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// `gemini` or `openai`: the `provider` label of the metrics.
    fn provider(&self) -> &'static str;
    fn model(&self) -> &str;
    async fn complete(
        &self,
        system: &str,
        history: &[Message],
        tools: &[ToolSpec],
    ) -> Result<ModelTurn, LlmError>;
}

/// Why a model request failed. Messages are bounded and never contain the API key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("the model provider is rate limiting (429){}", retry_hint(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error("the model provider failed with {status}: {message}")]
    Server { status: u16, message: String },
    #[error("the model provider rejected the request with {status}: {message}")]
    Client { status: u16, message: String },
    #[error("the model request timed out")]
    Timeout,
    #[error("could not reach the model provider: {0}")]
    Transport(String),
    #[error("could not understand the model's response: {0}")]
    Decode(String),
}

fn retry_hint(d: &Option<Duration>) -> String {
    d.map(|d| format!(", retry in {:.1}s", d.as_secs_f64()))
        .unwrap_or_default()
}

/// What to do after an [`LlmError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAdvice {
    /// Retrying cannot help (4xx, undecodable answer).
    Never,
    /// Retry after the server's delay, or after our own backoff when it gave none.
    After(Option<Duration>),
}

impl LlmError {
    pub fn retry_advice(&self) -> RetryAdvice {
        match self {
            LlmError::RateLimited { retry_after } => RetryAdvice::After(*retry_after),
            LlmError::Server { .. } | LlmError::Timeout | LlmError::Transport(_) => {
                RetryAdvice::After(None)
            }
            LlmError::Client { .. } | LlmError::Decode(_) => RetryAdvice::Never,
        }
    }

    /// The same error with `key` removed from its message, and the message bounded: serde and
    /// transport errors may quote what they read, and a provider may echo the key in a body.
    /// Every provider passes its errors through this at its edge.
    pub fn scrubbed(self, key: Option<&Secret>) -> LlmError {
        let clean = |m: String| clean_provider_message(&m, key);
        match self {
            LlmError::Server { status, message } => LlmError::Server {
                status,
                message: clean(message),
            },
            LlmError::Client { status, message } => LlmError::Client {
                status,
                message: clean(message),
            },
            LlmError::Transport(m) => LlmError::Transport(clean(m)),
            LlmError::Decode(m) => LlmError::Decode(clean(m)),
            other @ (LlmError::RateLimited { .. } | LlmError::Timeout) => other,
        }
    }

    /// The `outcome` label of `healing_llm_requests_total`.
    pub fn outcome_label(&self) -> &'static str {
        match self {
            LlmError::RateLimited { .. } => "rate_limited",
            // An answer we cannot use is the server's fault as far as the dashboard cares.
            LlmError::Server { .. } | LlmError::Decode(_) => "server_error",
            LlmError::Client { .. } => "client_error",
            LlmError::Timeout => "timeout",
            LlmError::Transport(_) => "transport_error",
        }
    }
}

/// Cuts `text` to at most `max` characters (on a char boundary), marking the cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…[truncated]", &text[..cut]),
    }
}

/// Maximum length of a provider error message kept in an [`LlmError`].
pub(crate) const MAX_ERROR_MESSAGE: usize = 500;

/// Prepares a provider's error message for an [`LlmError`]: key removed, bounded, and withheld
/// entirely when it talks about the key (OpenAI echoes a masked key in "Incorrect API key provided").
pub(crate) fn clean_provider_message(message: &str, key: Option<&Secret>) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("api key") || lower.contains("api_key") {
        return "the API key was refused (check the configured key)".to_string();
    }
    let scrubbed = match key {
        Some(k) => k.scrub(message),
        None => message.to_string(),
    };
    truncate_chars(scrubbed.trim(), MAX_ERROR_MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_messages_about_keys_are_withheld() {
        let key = Secret::new("sk-abc").unwrap();
        let m = clean_provider_message("Incorrect API key provided: sk-a**bc", Some(&key));
        assert!(!m.contains("sk-a"));
        let m = clean_provider_message("quota for sk-abc exceeded", Some(&key));
        assert_eq!(m, "quota for [redacted] exceeded");
    }

    #[test]
    fn retry_advice_by_error_kind() {
        let d = Some(Duration::from_secs(47));
        assert_eq!(
            LlmError::RateLimited { retry_after: d }.retry_advice(),
            RetryAdvice::After(d)
        );
        assert_eq!(
            LlmError::Server {
                status: 503,
                message: String::new()
            }
            .retry_advice(),
            RetryAdvice::After(None)
        );
        assert_eq!(LlmError::Timeout.retry_advice(), RetryAdvice::After(None));
        assert_eq!(
            LlmError::Client {
                status: 400,
                message: String::new()
            }
            .retry_advice(),
            RetryAdvice::Never
        );
        assert!(LlmError::RateLimited { retry_after: d }
            .to_string()
            .contains("47.0s"));
    }

    #[test]
    fn malformed_args_keep_the_raw_text() {
        assert_eq!(ToolArgs::parse(""), ToolArgs::Json(serde_json::json!({})));
        match ToolArgs::parse("{\"name\": ") {
            ToolArgs::Malformed { raw, .. } => assert_eq!(raw, "{\"name\": "),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncation_is_char_safe() {
        assert_eq!(truncate_chars("héllo", 10), "héllo");
        assert_eq!(truncate_chars("héllo", 2), "hé…[truncated]");
    }
}

/// Random JSON for the providers' property tests, built from the wire formats' own vocabulary so
/// that it reaches deep into the parsers instead of failing at the first field.
#[cfg(test)]
pub(crate) mod arbitrary {
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    pub const KEYS: &[&str] = &[
        // Gemini
        "candidates",
        "content",
        "parts",
        "role",
        "text",
        "thought",
        "functionCall",
        "name",
        "args",
        "id",
        "thoughtSignature",
        "usageMetadata",
        "promptTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "finishReason",
        "promptFeedback",
        "blockReason",
        "error",
        "code",
        "message",
        "status",
        "details",
        "@type",
        "retryDelay",
        // OpenAI
        "object",
        "created",
        "model",
        "choices",
        "index",
        "tool_calls",
        "type",
        "function",
        "arguments",
        "finish_reason",
        "usage",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "refusal",
        "logprobs",
        "custom",
        "input",
    ];

    pub const TEXTS: &[&str] = &[
        "model",
        "user",
        "assistant",
        "function",
        "tool_calls",
        "stop",
        "STOP",
        "47s",
        "-1s",
        "1e400s",
        "NaNs",
        "type.googleapis.com/google.rpc.RetryInfo",
        "{}",
        "{\"name\":\"x\"}",
        "{\"name\":",
        "",
        "chat.completion",
        "restart_container",
        "Please try again in 1.5s.",
        "try again in ",
        "try again in 9999999999999999999999ms",
        "RESOURCE_EXHAUSTED",
    ];

    pub fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(KEYS).prop_map(str::to_string),
            1 => "[a-zA-Z_@]{0,10}",
        ]
    }

    pub fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(TEXTS).prop_map(str::to_string),
            1 => any::<String>(),
        ]
    }

    pub fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            (0u64..1000).prop_map(Value::from),
        ]
    }

    pub fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number(),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 96, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    /// Random bytes: mostly JSON text, sometimes anything.
    pub fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => json().prop_map(|v| v.to_string().into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..200),
        ]
    }
}
