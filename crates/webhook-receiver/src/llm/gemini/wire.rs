//! Gemini `generateContent` wire format and its conversion to and from the neutral types.
//!
//! The model's content is kept as the exact JSON text received ([`RawValue`]) and sent back
//! verbatim, so `thoughtSignature` and any field this code does not know survive byte for byte.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::llm::types::{
    clean_provider_message, AssistantTurn, LlmError, Message, ModelTurn, Secret, ToolArgs,
    ToolCall, Usage,
};
use crate::llm::ToolSpec;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Value>,
    pub contents: Vec<ContentOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
    /// Only the thinking level ([`super::thinking`]); never the deprecated sampling parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum ContentOut<'a> {
    /// A model turn exactly as the API returned it.
    Echo(&'a RawValue),
    Built(Value),
}

/// Builds the request body for `system`, `history` and `tools`.
pub(crate) fn build_request<'a>(
    system: &str,
    history: &'a [Message],
    tools: &[ToolSpec],
) -> GenerateContentRequest<'a> {
    let contents = history
        .iter()
        .map(|m| match m {
            Message::User(text) => {
                ContentOut::Built(json!({"role": "user", "parts": [{"text": text}]}))
            }
            Message::Assistant(turn) => match &turn.echo {
                Some(raw) => ContentOut::Echo(raw),
                None => ContentOut::Built(model_content(turn)),
            },
            Message::ToolResults(results) => {
                let parts: Vec<Value> = results
                    .iter()
                    .map(|r| {
                        let mut fr = Map::new();
                        fr.insert("name".into(), Value::String(r.name.clone()));
                        if let Some(id) = &r.call_id {
                            fr.insert("id".into(), Value::String(id.clone()));
                        }
                        fr.insert("response".into(), r.response_object());
                        json!({ "functionResponse": fr })
                    })
                    .collect();
                ContentOut::Built(json!({"role": "user", "parts": parts}))
            }
        })
        .collect();
    let declarations: Vec<Value> = tools.iter().map(declaration).collect();
    GenerateContentRequest {
        system_instruction: (!system.is_empty()).then(|| json!({"parts": [{"text": system}]})),
        contents,
        tools: if declarations.is_empty() {
            Vec::new()
        } else {
            vec![json!({ "functionDeclarations": declarations })]
        },
        generation_config: None,
    }
}

/// A model content for a turn that was not received from Gemini (e.g. built by a test).
fn model_content(turn: &AssistantTurn) -> Value {
    let mut parts = Vec::new();
    if let Some(text) = &turn.text {
        parts.push(json!({ "text": text }));
    }
    for call in &turn.tool_calls {
        let mut fc = Map::new();
        fc.insert("name".into(), Value::String(call.name.clone()));
        fc.insert("args".into(), call.args.to_value());
        if let Some(id) = &call.id {
            fc.insert("id".into(), Value::String(id.clone()));
        }
        parts.push(json!({ "functionCall": fc }));
    }
    json!({"role": "model", "parts": parts})
}

/// Gemini's OpenAPI-subset schema: parameters are omitted for tools without arguments (an OBJECT
/// with empty `properties` is rejected) and keys outside the subset are dropped.
fn declaration(spec: &ToolSpec) -> Value {
    let mut d = json!({ "name": spec.name, "description": spec.description });
    let has_properties = spec
        .parameters
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty());
    if has_properties {
        d["parameters"] = openapi_subset(&spec.parameters);
    }
    d
}

fn openapi_subset(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "additionalProperties" | "$schema" | "$id"))
                .map(|(k, v)| {
                    // Under `properties` the keys are argument names, not schema keywords.
                    let v = if k == "properties" {
                        match v {
                            Value::Object(props) => Value::Object(
                                props
                                    .iter()
                                    .map(|(n, s)| (n.clone(), openapi_subset(s)))
                                    .collect(),
                            ),
                            other => other.clone(),
                        }
                    } else {
                        openapi_subset(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(openapi_subset).collect()),
        other => other.clone(),
    }
}

/// What is read from a 200 response. Only `candidates[0].content` must have its shape; usage,
/// finish reason and feedback are read leniently (a quirk there must not cost a valid turn).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    usage_metadata: Value,
    #[serde(default)]
    prompt_feedback: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Box<RawValue>>,
    #[serde(default)]
    finish_reason: Value,
}

#[derive(Deserialize)]
struct Content {
    role: Option<String>,
    #[serde(default)]
    parts: Vec<Part>,
}

/// The fields read from a part; everything else stays in the echoed raw content.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    function_call: Option<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    args: Option<Value>,
    id: Option<String>,
}

/// A token count: a non-negative integer, anything else counts as 0.
fn count(usage: &Value, field: &str) -> u64 {
    usage.get(field).and_then(Value::as_u64).unwrap_or(0)
}

/// A short text field (finish reason, block reason) for messages and logs.
fn short_text(v: &Value) -> Option<String> {
    v.as_str().map(|s| s.chars().take(64).collect())
}

/// Parses a 200 response into a turn whose `echo` is `candidates[0].content` as received.
/// Total: any body gives a turn or a [`LlmError::Decode`], never a panic.
pub(crate) fn parse_response(body: &[u8]) -> Result<ModelTurn, LlmError> {
    let resp: GenerateContentResponse = serde_json::from_slice(body)
        .map_err(|e| LlmError::Decode(format!("generateContent response: {e}")))?;
    let usage = &resp.usage_metadata;
    let usage = Usage {
        prompt_tokens: count(usage, "promptTokenCount"),
        output_tokens: count(usage, "candidatesTokenCount")
            .saturating_add(count(usage, "thoughtsTokenCount")),
    };
    let Some(candidate) = resp.candidates.into_iter().next() else {
        let reason = resp.prompt_feedback.get("blockReason").and_then(short_text);
        return Err(LlmError::Decode(format!(
            "no candidate in the response (blockReason {})",
            reason.as_deref().unwrap_or("none")
        )));
    };
    let finish_reason = short_text(&candidate.finish_reason);
    let Some(raw) = candidate.content else {
        return Err(LlmError::Decode(format!(
            "the candidate has no content (finishReason {})",
            finish_reason.as_deref().unwrap_or("none")
        )));
    };
    // An object, or nothing: serde would also read the struct from an array, which could not be
    // echoed back as a content.
    let mut object = match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Object(o)) => o,
        Ok(other) => {
            return Err(LlmError::Decode(format!(
                "candidate content is {}, not an object",
                json_kind(&other)
            )))
        }
        Err(e) => return Err(LlmError::Decode(format!("candidate content: {e}"))),
    };
    let content: Content = serde_json::from_value(Value::Object(object.clone()))
        .map_err(|e| LlmError::Decode(format!("candidate content: {e}")))?;
    if content.parts.is_empty() {
        return Err(LlmError::Decode(format!(
            "the candidate has no parts (finishReason {})",
            finish_reason.as_deref().unwrap_or("none")
        )));
    }
    // The history must say who spoke; add the role only when the API left it out.
    let echo = if content.role.as_deref() == Some("model") {
        raw
    } else {
        object.insert("role".into(), Value::String("model".into()));
        RawValue::from_string(Value::Object(object).to_string())
            .map_err(|e| LlmError::Decode(e.to_string()))?
    };

    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for part in content.parts {
        if let Some(fc) = part.function_call {
            let args = fc.args.unwrap_or_else(|| Value::Object(Map::new()));
            tool_calls.push(ToolCall {
                id: fc.id,
                name: fc.name,
                args: ToolArgs::Json(args),
            });
        } else if let Some(t) = part.text {
            if !part.thought {
                text.push_str(&t);
            }
        }
    }
    Ok(ModelTurn {
        turn: AssistantTurn {
            text: (!text.trim().is_empty()).then_some(text),
            tool_calls,
            echo: Some(echo),
        },
        usage,
        finish_reason,
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    status: Option<String>,
    #[serde(default)]
    details: Vec<Value>,
}

/// Maps a non-2xx response to an [`LlmError`]. `retry_after_header` is the HTTP `Retry-After`
/// value, used only when the body carries no `RetryInfo`.
pub(crate) fn parse_error(
    status: u16,
    retry_after_header: Option<&str>,
    body: &[u8],
    key: &Secret,
) -> LlmError {
    // The API answers `{"error": ...}`; some front ends wrap it in an array.
    // (Parsed via Value: serde would also read a struct from a one-element array.)
    let parsed = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let v = match v {
            Value::Array(items) => items.into_iter().next()?,
            other => other,
        };
        serde_json::from_value::<ErrorEnvelope>(v).ok()
    });
    let (message, retry_delay) = match parsed {
        Some(env) => {
            let e = env.error;
            let retry = e.details.iter().find_map(retry_info_delay);
            let msg = match (e.status, e.message) {
                (Some(s), Some(m)) => format!("{s}: {m}"),
                (None, Some(m)) => m,
                (Some(s), None) => s,
                (None, None) => String::new(),
            };
            (msg, retry)
        }
        None => (String::from_utf8_lossy(body).into_owned(), None),
    };
    let message = clean_provider_message(&message, Some(key));
    match status {
        429 => LlmError::RateLimited {
            retry_after: retry_delay
                .or_else(|| retry_after_header.and_then(crate::retry_after::parse)),
        },
        500..=599 => LlmError::Server { status, message },
        _ => LlmError::Client { status, message },
    }
}

fn retry_info_delay(detail: &Value) -> Option<Duration> {
    let ty = detail.get("@type")?.as_str()?;
    if !ty.ends_with("google.rpc.RetryInfo") {
        return None;
    }
    parse_proto_duration(detail.get("retryDelay")?.as_str()?)
}

/// A protobuf JSON duration: `"47s"`, `"0.5s"`, `"1.000340012s"`.
pub(crate) fn parse_proto_duration(s: &str) -> Option<Duration> {
    crate::retry_after::from_secs(s.trim().strip_suffix('s')?.parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::types::ToolResult;

    fn specs() -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "list_webapp_status".into(),
                description: "List replicas".into(),
                parameters: json!({"type": "object", "properties": {}}),
            },
            ToolSpec {
                name: "restart_container".into(),
                description: "Restart one replica".into(),
                parameters: json!({
                    "type": "object",
                    "properties": {"name": {"type": "string", "description": "container name"}},
                    "required": ["name"],
                    "additionalProperties": false
                }),
            },
        ]
    }

    const RESPONSE: &str = r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"restart_container","args":{"name":"app-webapp-1"}},"thoughtSignature":"c2lnLTE/+==","futureField":{"x":[1,2.50,"é"]}},{"functionCall":{"name":"restart_container","args":{"name":"app-webapp-2"}}}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":812,"candidatesTokenCount":40,"totalTokenCount":900,"thoughtsTokenCount":48},"modelVersion":"gemini-3.5-flash","responseId":"abc"}"#;

    #[test]
    fn parses_parallel_calls_and_usage() {
        let turn = parse_response(RESPONSE.as_bytes()).unwrap();
        assert_eq!(
            turn.usage,
            Usage {
                prompt_tokens: 812,
                output_tokens: 88
            }
        );
        assert_eq!(turn.finish_reason.as_deref(), Some("STOP"));
        assert_eq!(turn.turn.text, None);
        let names: Vec<_> = turn
            .turn
            .tool_calls
            .iter()
            .map(|c| c.args.to_value())
            .collect();
        assert_eq!(
            names,
            vec![
                json!({"name": "app-webapp-1"}),
                json!({"name": "app-webapp-2"})
            ]
        );
    }

    #[test]
    fn model_content_is_echoed_byte_for_byte() {
        let turn = parse_response(RESPONSE.as_bytes()).unwrap();
        let expected = r#"{"parts":[{"functionCall":{"name":"restart_container","args":{"name":"app-webapp-1"}},"thoughtSignature":"c2lnLTE/+==","futureField":{"x":[1,2.50,"é"]}},{"functionCall":{"name":"restart_container","args":{"name":"app-webapp-2"}}}],"role":"model"}"#;
        let calls = turn.turn.tool_calls.clone();
        let history = vec![
            Message::User("heal".into()),
            Message::Assistant(turn.turn),
            Message::ToolResults(vec![
                ToolResult {
                    call_id: None,
                    name: calls[0].name.clone(),
                    result: Ok(json!({"restarted": true})),
                },
                ToolResult {
                    call_id: None,
                    name: calls[1].name.clone(),
                    result: Err("not allowed".into()),
                },
            ]),
        ];
        let body = serde_json::to_string(&build_request("sys", &history, &specs())).unwrap();
        assert!(body.contains(expected), "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["contents"][2]["role"], "user");
        assert_eq!(
            v["contents"][2]["parts"],
            json!([
                {"functionResponse": {"name": "restart_container", "response": {"output": {"restarted": true}}}},
                {"functionResponse": {"name": "restart_container", "response": {"error": "not allowed"}}}
            ])
        );
        assert_eq!(v["systemInstruction"], json!({"parts": [{"text": "sys"}]}));
    }

    #[test]
    fn declarations_follow_the_openapi_subset() {
        let req = build_request("", &[], &specs());
        let v = serde_json::to_value(&req).unwrap();
        let decls = &v["tools"][0]["functionDeclarations"];
        assert!(
            decls[0].get("parameters").is_none(),
            "no-arg tool must omit parameters"
        );
        assert_eq!(decls[1]["parameters"]["required"], json!(["name"]));
        assert!(decls[1]["parameters"].get("additionalProperties").is_none());
        assert!(v.get("systemInstruction").is_none());
    }

    #[test]
    fn call_ids_are_kept_and_answered() {
        let body = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"id":"fc-1","name":"list_webapp_status","args":{}}}]}}]}"#;
        let turn = parse_response(body.as_bytes()).unwrap();
        assert_eq!(turn.turn.tool_calls[0].id.as_deref(), Some("fc-1"));
        let history = [Message::ToolResults(vec![ToolResult {
            call_id: Some("fc-1".into()),
            name: "list_webapp_status".into(),
            result: Ok(json!([])),
        }])];
        let v = serde_json::to_value(build_request("", &history, &[])).unwrap();
        assert_eq!(
            v["contents"][0]["parts"][0]["functionResponse"]["id"],
            "fc-1"
        );
    }

    #[test]
    fn text_turn_skips_thoughts_and_adds_missing_role() {
        let body = r#"{"candidates":[{"content":{"parts":[{"text":"thinking...","thought":true},{"text":"All replicas healthy.","thoughtSignature":"xyz"}]}}]}"#;
        let turn = parse_response(body.as_bytes()).unwrap();
        assert_eq!(turn.turn.text.as_deref(), Some("All replicas healthy."));
        let echo: Value = serde_json::from_str(turn.turn.echo.unwrap().get()).unwrap();
        assert_eq!(echo["role"], "model");
        assert_eq!(echo["parts"][1]["thoughtSignature"], "xyz");
    }

    #[test]
    fn empty_candidate_is_a_decode_error() {
        let body = r#"{"candidates":[{"finishReason":"MALFORMED_FUNCTION_CALL"}]}"#;
        let err = parse_response(body.as_bytes()).unwrap_err();
        assert!(matches!(err, LlmError::Decode(m) if m.contains("MALFORMED_FUNCTION_CALL")));
        let blocked = r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#;
        assert!(matches!(
            parse_response(blocked.as_bytes()),
            Err(LlmError::Decode(_))
        ));
    }

    #[test]
    fn rate_limit_error_reads_retry_info() {
        let key = Secret::new("k").unwrap();
        let body = r#"{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"47s"}]}}"#;
        assert_eq!(
            parse_error(429, None, body.as_bytes(), &key),
            LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(47))
            }
        );
        let plain = r#"{"error":{"code":429,"message":"Resource exhausted.","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            parse_error(429, Some("3"), plain.as_bytes(), &key),
            LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            parse_error(429, None, b"", &key),
            LlmError::RateLimited { retry_after: None }
        );
        assert_eq!(
            parse_proto_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_proto_duration("-1s"), None);
    }

    #[test]
    fn client_and_server_errors() {
        let key = Secret::new("AIzaSECRET").unwrap();
        let body = r#"[{"error":{"code":400,"message":"Corrupted thought signature.","status":"INVALID_ARGUMENT"}}]"#;
        assert_eq!(
            parse_error(400, None, body.as_bytes(), &key),
            LlmError::Client {
                status: 400,
                message: "INVALID_ARGUMENT: Corrupted thought signature.".into()
            }
        );
        let bad_key = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#;
        let e = parse_error(400, None, bad_key.as_bytes(), &key);
        assert!(matches!(e, LlmError::Client { status: 400, .. }));
        let e = parse_error(503, None, b"upstream AIzaSECRET overloaded", &key);
        assert_eq!(
            e,
            LlmError::Server {
                status: 503,
                message: "upstream [redacted] overloaded".into()
            }
        );
    }

    #[test]
    fn content_of_any_shape_is_a_decode_error_not_a_panic() {
        for content in [
            r#"["x", [{"text": "hi"}]]"#,
            r#"[null, []]"#,
            r#""text""#,
            "42",
            "null",
            r#"{"parts": {"text": "hi"}}"#,
            r#"{"role": 7, "parts": [{"text": "hi"}]}"#,
        ] {
            let body = format!(r#"{{"candidates":[{{"content":{content}}}]}}"#);
            let r = parse_response(body.as_bytes());
            assert!(matches!(r, Err(LlmError::Decode(_))), "{content}: {r:?}");
        }
        // Usage quirks do not cost a valid turn; counts saturate.
        let body = r#"{"candidates":[{"content":{"parts":[{"text":"ok"}]},"finishReason":3}],
            "usageMetadata":{"promptTokenCount":-1,"candidatesTokenCount":18446744073709551615,"thoughtsTokenCount":5}}"#;
        let turn = parse_response(body.as_bytes()).unwrap();
        assert_eq!(turn.usage.prompt_tokens, 0);
        assert_eq!(turn.usage.output_tokens, u64::MAX);
        assert_eq!(turn.finish_reason, None);
    }

    mod properties {
        use super::*;
        use crate::llm::types::arbitrary;
        use proptest::prelude::*;

        /// A content close to what Gemini sends, often valid, sometimes not.
        fn content() -> impl Strategy<Value = Value> {
            let part = prop_oneof![
                arbitrary::text().prop_map(|t| json!({"text": t})),
                (arbitrary::text(), arbitrary::json())
                    .prop_map(|(n, a)| json!({"functionCall": {"name": n, "args": a}})),
                (arbitrary::text(), arbitrary::json(), arbitrary::text()).prop_map(
                    |(n, a, id)| json!({"functionCall": {"name": n, "args": a, "id": id}, "thoughtSignature": "c2ln"})
                ),
                (arbitrary::text(), any::<bool>())
                    .prop_map(|(t, b)| json!({"text": t, "thought": b})),
                arbitrary::json(),
            ];
            (
                prop_oneof![Just(json!("model")), arbitrary::json()],
                prop::collection::vec(part, 0..4),
                any::<bool>(),
            )
                .prop_map(|(role, parts, with_role)| {
                    if with_role {
                        json!({"role": role, "parts": parts})
                    } else {
                        json!({"parts": parts})
                    }
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn any_body_parses_or_is_refused(body in arbitrary::body()) {
                let _ = parse_response(&body);
            }

            /// A turn that parses can always be sent back: its echo is an object spoken by the model.
            #[test]
            fn any_candidate_content_is_total(
                content in prop_oneof![content(), arbitrary::json()],
                extra in arbitrary::json(),
            ) {
                let body = json!({"candidates": [{"content": content, "finishReason": extra}], "usageMetadata": extra});
                if let Ok(turn) = parse_response(body.to_string().as_bytes()) {
                    let echo: Value = serde_json::from_str(turn.turn.echo.as_ref().unwrap().get()).unwrap();
                    prop_assert_eq!(&echo["role"], "model");
                    prop_assert!(echo["parts"].as_array().is_some_and(|p| !p.is_empty()));
                    let history = vec![Message::User("u".into()), Message::Assistant(turn.turn)];
                    let sent = serde_json::to_value(build_request("s", &history, &specs())).unwrap();
                    prop_assert_eq!(&sent["contents"][1], &echo);
                }
            }

            /// 429 is always retryable, 5xx always a server error, and the key never survives.
            #[test]
            fn any_error_body_maps_by_status_without_the_key(
                status in 100u16..1000,
                body in arbitrary::json(),
                raw in arbitrary::body(),
                retry_after in proptest::option::of(arbitrary::text()),
                use_raw in any::<bool>(),
            ) {
                let key = Secret::new("AIzaLeakCanary42").unwrap();
                let mut bytes = if use_raw { raw } else { body.to_string().into_bytes() };
                bytes.extend_from_slice(b" AIzaLeakCanary42");
                let e = parse_error(status, retry_after.as_deref(), &bytes, &key);
                prop_assert!(!e.to_string().contains("AIzaLeakCanary42"), "{}", e);
                let kind_ok = match status {
                    429 => matches!(e, LlmError::RateLimited { .. }),
                    500..=599 => matches!(e, LlmError::Server { .. }),
                    _ => matches!(e, LlmError::Client { .. }),
                };
                prop_assert!(kind_ok, "{} -> {:?}", status, e);
            }
        }
    }
}
