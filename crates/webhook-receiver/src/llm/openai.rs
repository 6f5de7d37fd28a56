//! OpenAI-compatible chat completions (OpenAI, Ollama, vLLM...) through async-openai's typed API.
//!
//! Not for Gemini: its OpenAI-compatible endpoint carries the thought signature in a field the
//! typed structs drop, so the second turn fails there. Gemini goes through [`super::gemini`].

use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestToolMessage,
    ChatCompletionRequestUserMessage, ChatCompletionResponseMessage, ChatCompletionTool,
    ChatCompletionTools, CreateChatCompletionRequest, CreateChatCompletionResponse, FunctionCall,
    FunctionObject,
};
use async_openai::Client;
use async_trait::async_trait;
use serde_json::value::RawValue;

use super::types::{
    AssistantTurn, ChatModel, LlmError, Message, ModelTurn, Secret, ToolArgs, ToolCall, Usage,
};
use super::ToolSpec;
use crate::text::error_chain;

mod http;

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// `None` for servers that need no key (a local Ollama).
    pub api_key: Option<Secret>,
    /// Up to and including the version, without a trailing slash: `http://ollama:11434/v1`.
    pub base_url: String,
    pub model: String,
    pub request_timeout: Duration,
}

pub struct OpenAiCompatible {
    client: Client<OpenAIConfig>,
    api_key: Option<Secret>,
    model: String,
}

impl OpenAiCompatible {
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| LlmError::Transport(format!("building the HTTP client: {e}")))?;
        let key = config
            .api_key
            .as_ref()
            .map(|k| k.expose())
            .unwrap_or_default();
        // async-openai builds this header with `.parse().unwrap()` on every request: a key that
        // cannot be a header value would panic there, so it is refused here, at start.
        if reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err() {
            return Err(LlmError::Client {
                status: 0,
                message: "OPENAI_API_KEY holds characters that cannot travel in an HTTP header"
                    .into(),
            });
        }
        // Everything explicit: OpenAIConfig::new() reads OPENAI_API_KEY, OPENAI_ORG_ID and
        // OPENAI_PROJECT_ID itself (and unwraps them into headers).
        let openai_config = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(key)
            .with_org_id("")
            .with_project_id("");
        // async-openai's default executor retries 429, 5xx and connect errors by itself (3 times,
        // up to 8 s apart). Our service leaves every retry to the loop, which owns the budget and
        // counts each request in the metrics, and reads failed responses itself.
        let client =
            Client::with_config(openai_config).with_http_service(http::StatusAware::new(http));
        Ok(OpenAiCompatible {
            client,
            api_key: config.api_key,
            model: config.model,
        })
    }
}

#[async_trait]
impl ChatModel for OpenAiCompatible {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.model
    }

    async fn complete(
        &self,
        system: &str,
        history: &[Message],
        tools: &[ToolSpec],
    ) -> Result<ModelTurn, LlmError> {
        let request = build_request(&self.model, system, history, tools);
        let response = self
            .client
            .chat()
            .create(request)
            .await
            .map_err(|e| map_error(e, self.api_key.as_ref()))?;
        parse_response(response).map_err(|e| e.scrubbed(self.api_key.as_ref()))
    }
}

pub(crate) fn build_request(
    model: &str,
    system: &str,
    history: &[Message],
    tools: &[ToolSpec],
) -> CreateChatCompletionRequest {
    let mut messages = Vec::with_capacity(history.len() + 1);
    if !system.is_empty() {
        messages.push(ChatCompletionRequestMessage::System(
            ChatCompletionRequestSystemMessage {
                content: system.into(),
                name: None,
            },
        ));
    }
    for m in history {
        match m {
            Message::User(text) => messages.push(ChatCompletionRequestMessage::User(
                ChatCompletionRequestUserMessage {
                    content: text.as_str().into(),
                    name: None,
                },
            )),
            Message::Assistant(turn) => messages.push(ChatCompletionRequestMessage::Assistant(
                assistant_message(turn),
            )),
            Message::ToolResults(results) => {
                for r in results {
                    messages.push(ChatCompletionRequestMessage::Tool(
                        ChatCompletionRequestToolMessage {
                            content: r.response_object().to_string().into(),
                            tool_call_id: r.call_id.clone().unwrap_or_default(),
                        },
                    ));
                }
            }
        }
    }
    let tools: Vec<ChatCompletionTools> = tools
        .iter()
        .map(|t| {
            ChatCompletionTools::Function(ChatCompletionTool {
                function: FunctionObject {
                    name: t.name.clone(),
                    description: Some(t.description.clone()),
                    parameters: Some(t.parameters.clone()),
                    strict: None,
                },
            })
        })
        .collect();
    CreateChatCompletionRequest {
        model: model.to_string(),
        messages,
        tools: (!tools.is_empty()).then_some(tools),
        ..Default::default()
    }
}

/// The assistant message as received (tool-call `arguments` strings unchanged), or rebuilt from
/// the neutral turn when it was not received from this provider.
fn assistant_message(turn: &AssistantTurn) -> ChatCompletionRequestAssistantMessage {
    let received = turn
        .echo
        .as_ref()
        .and_then(|raw| serde_json::from_str::<ChatCompletionResponseMessage>(raw.get()).ok());
    let (content, tool_calls) = match received {
        Some(msg) => (msg.content, msg.tool_calls),
        None => {
            let calls: Vec<ChatCompletionMessageToolCalls> = turn
                .tool_calls
                .iter()
                .map(|c| {
                    ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                        id: c.id.clone().unwrap_or_default(),
                        function: FunctionCall {
                            name: c.name.clone(),
                            arguments: match &c.args {
                                ToolArgs::Json(v) => v.to_string(),
                                ToolArgs::Malformed { raw, .. } => raw.clone(),
                            },
                        },
                    })
                })
                .collect();
            (turn.text.clone(), (!calls.is_empty()).then_some(calls))
        }
    };
    ChatCompletionRequestAssistantMessage {
        content: content.map(Into::into),
        tool_calls,
        ..Default::default()
    }
}

pub(crate) fn parse_response(
    response: CreateChatCompletionResponse,
) -> Result<ModelTurn, LlmError> {
    let usage = response
        .usage
        .as_ref()
        .map(|u| Usage {
            prompt_tokens: u64::from(u.prompt_tokens),
            output_tokens: u64::from(u.completion_tokens),
        })
        .unwrap_or_default();
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(LlmError::Decode("the response has no choices".into()));
    };
    let finish_reason = choice
        .finish_reason
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v.as_str().map(str::to_string));
    let echo = serde_json::to_string(&choice.message)
        .ok()
        .and_then(|s| RawValue::from_string(s).ok());
    let message = choice.message;
    let tool_calls = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|call| match call {
            ChatCompletionMessageToolCalls::Function(f) => ToolCall {
                id: Some(f.id),
                name: f.function.name,
                args: ToolArgs::parse(&f.function.arguments),
            },
            ChatCompletionMessageToolCalls::Custom(c) => ToolCall {
                id: Some(c.id),
                name: c.custom_tool.name,
                args: ToolArgs::Malformed {
                    raw: c.custom_tool.input,
                    error: "custom (free-form) tool calls are not supported".into(),
                },
            },
        })
        .collect();
    let text = message
        .content
        .or(message.refusal)
        .filter(|t| !t.trim().is_empty());
    Ok(ModelTurn {
        turn: AssistantTurn {
            text,
            tool_calls,
            echo,
        },
        usage,
        finish_reason,
    })
}

pub(crate) fn map_error(e: OpenAIError, key: Option<&Secret>) -> LlmError {
    let error = match e {
        // Every non-2xx answer comes through our HTTP service as an HttpFailure.
        OpenAIError::Boxed(boxed) => match boxed.downcast::<http::HttpFailure>() {
            Ok(failure) => failure_error(&failure),
            Err(other) => LlmError::Transport(error_chain(other.as_ref())),
        },
        // Not reached through our service; kept for completeness (the body is in the message).
        OpenAIError::ApiError(resp) => {
            status_error(resp.status_code.as_u16(), None, &resp.api_error.message)
        }
        OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout,
        OpenAIError::Reqwest(e) => LlmError::Transport(error_chain(&e)),
        // The body is in the error too; keep only serde's message.
        OpenAIError::JSONDeserialize(e, _) => LlmError::Decode(format!("chat completion: {e}")),
        other => LlmError::Decode(other.to_string()),
    };
    error.scrubbed(key)
}

/// A non-2xx response: 429 and 5xx are retryable whatever the body holds (a proxy's HTML page,
/// plain text, OpenAI's JSON, or an Ollama-style `{"error": "text"}`).
fn failure_error(f: &http::HttpFailure) -> LlmError {
    status_error(f.status, f.retry_after, &f.message())
}

fn status_error(status: u16, retry_after: Option<Duration>, message: &str) -> LlmError {
    match status {
        429 => LlmError::RateLimited {
            retry_after: retry_after.or_else(|| retry_hint(message)),
        },
        500..=599 => LlmError::Server {
            status,
            message: message.to_string(),
        },
        _ => LlmError::Client {
            status,
            message: message.to_string(),
        },
    }
}

/// async-openai drops the response headers, so `Retry-After` is lost; OpenAI also says it in the
/// message: "Please try again in 1.5s" / "in 20ms".
fn retry_hint(message: &str) -> Option<Duration> {
    let rest = message.split_once("try again in ")?.1;
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let value: f64 = number.parse().ok()?;
    let unit = &rest[number.len()..];
    let secs = if unit.starts_with("ms") {
        value / 1000.0
    } else if unit.starts_with('s') {
        value
    } else {
        return None;
    };
    crate::retry_after::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::types::ToolResult;
    use serde_json::{json, Value};

    fn response(body: Value) -> CreateChatCompletionResponse {
        serde_json::from_value(body).unwrap()
    }

    fn tool_call_response() -> CreateChatCompletionResponse {
        response(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "restart_container", "arguments": "{\"name\":\"w-1\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "restart_container", "arguments": "{\"name\": \"w-2\""}}
                ]}}],
            "usage": {"prompt_tokens": 300, "completion_tokens": 25, "total_tokens": 325}
        }))
    }

    #[test]
    fn parses_tool_calls_including_malformed_arguments() {
        let turn = parse_response(tool_call_response()).unwrap();
        assert_eq!(
            turn.usage,
            Usage {
                prompt_tokens: 300,
                output_tokens: 25
            }
        );
        assert_eq!(turn.finish_reason.as_deref(), Some("tool_calls"));
        let calls = &turn.turn.tool_calls;
        assert_eq!(calls[0].args, ToolArgs::Json(json!({"name": "w-1"})));
        assert!(
            matches!(&calls[1].args, ToolArgs::Malformed { raw, .. } if raw == "{\"name\": \"w-2\"")
        );
    }

    #[test]
    fn history_echoes_arguments_and_answers_every_call_id() {
        let turn = parse_response(tool_call_response()).unwrap();
        let history = vec![
            Message::User("heal".into()),
            Message::Assistant(turn.turn),
            Message::ToolResults(vec![
                ToolResult {
                    call_id: Some("call_a".into()),
                    name: "restart_container".into(),
                    result: Ok(json!("ok")),
                },
                ToolResult {
                    call_id: Some("call_b".into()),
                    name: "restart_container".into(),
                    result: Err("bad args".into()),
                },
            ]),
        ];
        let specs = [ToolSpec {
            name: "restart_container".into(),
            description: "d".into(),
            parameters: json!({"type": "object"}),
        }];
        let v = serde_json::to_value(build_request("m", "sys", &history, &specs)).unwrap();
        let msgs = v["messages"].as_array().unwrap();
        assert_eq!(msgs[0], json!({"role": "system", "content": "sys"}));
        assert_eq!(
            msgs[2]["tool_calls"][1]["function"]["arguments"],
            "{\"name\": \"w-2\""
        );
        assert_eq!(msgs[2]["tool_calls"][0]["type"], "function");
        assert_eq!(
            msgs[3],
            json!({"role": "tool", "tool_call_id": "call_a", "content": "{\"output\":\"ok\"}"})
        );
        assert_eq!(msgs[4]["tool_call_id"], "call_b");
        assert_eq!(v["tools"][0]["type"], "function");
        assert_eq!(v["tools"][0]["function"]["name"], "restart_container");
        assert!(v.get("stream").is_none());
    }

    #[test]
    fn retry_hint_from_message() {
        assert_eq!(
            retry_hint("Rate limit reached. Please try again in 1.5s. Visit"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_hint("Please try again in 20ms."),
            Some(Duration::from_millis(20))
        );
        assert_eq!(retry_hint("slow down"), None);
    }

    fn failure(status: u16, retry_after: Option<Duration>, body: &str) -> LlmError {
        let f = http::HttpFailure {
            status,
            retry_after,
            body: body.as_bytes().to_vec(),
        };
        map_error(
            OpenAIError::Boxed(Box::new(f)),
            Secret::new("sk-canary-123").as_ref(),
        )
    }

    #[test]
    fn a_429_or_5xx_is_retryable_whatever_its_body() {
        assert_eq!(
            failure(
                429,
                Some(Duration::from_secs(3)),
                "<html>Too Many Requests</html>"
            ),
            LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            failure(
                429,
                None,
                r#"{"error":{"message":"Rate limit reached. Please try again in 20ms.","type":"requests"}}"#
            ),
            LlmError::RateLimited {
                retry_after: Some(Duration::from_millis(20))
            }
        );
        assert_eq!(
            failure(429, None, ""),
            LlmError::RateLimited { retry_after: None }
        );
        assert_eq!(
            failure(502, None, "<html><h1>502 Bad Gateway</h1></html>"),
            LlmError::Server {
                status: 502,
                message: "<html><h1>502 Bad Gateway</h1></html>".into()
            }
        );
        assert_eq!(
            failure(
                503,
                None,
                r#"[{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}]"#
            ),
            LlmError::Server {
                status: 503,
                message: "The model is overloaded.".into()
            }
        );
        // Ollama says what is wrong in a plain string.
        assert_eq!(
            failure(
                404,
                None,
                r#"{"error":"model \"llama9\" not found, try pulling it first"}"#
            ),
            LlmError::Client {
                status: 404,
                message: "model \"llama9\" not found, try pulling it first".into()
            }
        );
        // The key never survives, in whatever field it comes back.
        let e = failure(500, None, "upstream rejected sk-canary-123");
        assert_eq!(
            e,
            LlmError::Server {
                status: 500,
                message: "upstream rejected [redacted]".into()
            }
        );
        for e in [
            failure(
                401,
                None,
                r#"{"error":{"message":"Incorrect API key provided: sk-c****-123."}}"#,
            ),
            failure(400, None, "sk-canary-123"),
        ] {
            assert!(!format!("{e} {e:?}").contains("sk-c"), "{e:?}");
        }
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_refused_at_start() {
        let config = |key: &str| OpenAiConfig {
            api_key: Secret::new(key),
            base_url: DEFAULT_BASE_URL.into(),
            model: "m".into(),
            request_timeout: Duration::from_secs(1),
        };
        assert!(OpenAiCompatible::new(config("sk-ok")).is_ok());
        for bad in ["sk-\nline", "sk-\u{7f}", "sk-\u{1}x"] {
            let e = OpenAiCompatible::new(config(bad)).err().expect(bad);
            assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
        }
    }

    mod properties {
        use super::*;
        use crate::llm::types::arbitrary;
        use proptest::prelude::*;

        fn message() -> impl Strategy<Value = Value> {
            let tool_call = (arbitrary::text(), arbitrary::text(), arbitrary::text()).prop_map(
                |(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}),
            );
            (
                prop_oneof![Just(Value::Null), arbitrary::text().prop_map(Value::String)],
                prop::option::of(prop::collection::vec(
                    prop_oneof![3 => tool_call, 1 => arbitrary::json()],
                    0..4,
                )),
                prop_oneof![Just(Value::Null), arbitrary::text().prop_map(Value::String)],
            )
                .prop_map(|(content, calls, refusal)| {
                    let mut m =
                        json!({"role": "assistant", "content": content, "refusal": refusal});
                    if let Some(calls) = calls {
                        m["tool_calls"] = Value::Array(calls);
                    }
                    m
                })
        }

        fn completion() -> impl Strategy<Value = Value> {
            (
                prop::collection::vec((prop_oneof![3 => message(), 1 => arbitrary::json()], arbitrary::json()), 0..3),
                prop_oneof![
                    (0u32..100_000, 0u32..100_000).prop_map(|(p, c)| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})),
                    arbitrary::json()
                ],
            )
                .prop_map(|(choices, usage)| {
                    let choices: Vec<Value> = choices
                        .into_iter()
                        .enumerate()
                        .map(|(i, (m, f))| json!({"index": i, "message": m, "finish_reason": f}))
                        .collect();
                    json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": choices, "usage": usage})
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

            /// Whatever async-openai accepts, the turn parses and goes back out in a request.
            #[test]
            fn any_completion_parses_and_round_trips(body in prop_oneof![completion(), arbitrary::json()]) {
                if let Ok(response) = serde_json::from_value::<CreateChatCompletionResponse>(body) {
                    if let Ok(turn) = parse_response(response) {
                        let history = vec![Message::User("u".into()), Message::Assistant(turn.turn)];
                        let request = build_request("m", "s", &history, &[]);
                        prop_assert!(serde_json::to_value(request).is_ok());
                    }
                }
            }

            /// 429 is always retryable, 5xx always a server error, and the key never survives.
            #[test]
            fn any_failed_response_maps_by_status_without_the_key(
                status in 100u16..1000,
                body in arbitrary::body(),
                retry_after in proptest::option::of(0u64..100_000),
            ) {
                let mut body = body;
                body.extend_from_slice(b" sk-canary-123");
                let text = String::from_utf8_lossy(&body).into_owned();
                let e = failure(status, retry_after.map(Duration::from_millis), &text);
                let shown = format!("{e} {e:?}");
                prop_assert!(!shown.contains("sk-canary-123"), "{}", shown);
                let kind_ok = match status {
                    429 => matches!(e, LlmError::RateLimited { .. }),
                    500..=599 => matches!(e, LlmError::Server { .. }),
                    _ => matches!(e, LlmError::Client { .. }),
                };
                prop_assert!(kind_ok, "{} -> {:?}", status, e);
            }

            #[test]
            fn retry_hints_are_total(message in arbitrary::text(), tail in arbitrary::text()) {
                let _ = retry_hint(&format!("{message}try again in {tail}"));
                let _ = retry_hint(&message);
            }
        }
    }
}
