//! OpenAI-compatible chat completions (OpenAI, Ollama, vLLM...) through async-openai's typed API.
//!
//! Not for Gemini: its OpenAI-compatible endpoint carries the thought signature in a field the
//! typed structs drop, so the second turn fails there. Gemini goes through [`super::gemini`].

use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
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

use super::gemini::error_chain;
use super::types::{
    clean_provider_message, AssistantTurn, ChatModel, LlmError, Message, ModelTurn, Secret,
    ToolArgs, ToolCall, Usage,
};
use super::ToolSpec;

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
        // Set the key explicitly (possibly empty): OpenAIConfig::new() would read OPENAI_API_KEY itself.
        let openai_config = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(
                config
                    .api_key
                    .as_ref()
                    .map(|k| k.expose())
                    .unwrap_or_default(),
            );
        // async-openai's default executor retries 429, 5xx and connect errors by itself (3 times,
        // up to 8 s apart). A bare service leaves every retry to the loop, which owns the budget
        // and counts each request in the metrics.
        let client =
            Client::with_config(openai_config).with_http_service(ReqwestService::new(http));
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
        parse_response(response)
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
    match e {
        OpenAIError::ApiError(resp) => {
            let status = resp.status_code.as_u16();
            let message = clean_provider_message(&resp.api_error.message, key);
            match status {
                429 => LlmError::RateLimited {
                    retry_after: retry_hint(&resp.api_error.message),
                },
                500..=599 => LlmError::Server { status, message },
                _ => LlmError::Client { status, message },
            }
        }
        OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout,
        OpenAIError::Reqwest(e) => {
            let text = error_chain(&e);
            LlmError::Transport(key.map(|k| k.scrub(&text)).unwrap_or(text))
        }
        // The body is in the error too; keep only serde's message (bounded, key-free).
        OpenAIError::JSONDeserialize(e, _) => LlmError::Decode(format!("chat completion: {e}")),
        other => LlmError::Decode(clean_provider_message(&other.to_string(), key)),
    }
}

/// async-openai drops the response headers, so `Retry-After` is lost; OpenAI also says it in the
/// message: "Please try again in 1.5s" / "in 20ms".
fn retry_hint(message: &str) -> Option<Duration> {
    let rest = &message[message.find("try again in ")? + "try again in ".len()..];
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
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
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
}
