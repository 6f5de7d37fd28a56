//! The checks the real Gemini API makes on a `generateContent` request, with its error messages.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use serde_json::{Map, Value};

/// Signs a model turn: a keyed hash of its parts without signatures. Stateless, so the fake
/// needs no memory of past turns, and any change to the turn or its signature is caught.
#[derive(Clone)]
pub(crate) struct Signer(RandomState);

impl Signer {
    pub(crate) fn new() -> Self {
        Signer(RandomState::new())
    }

    pub(crate) fn sign(&self, parts: &[Value]) -> String {
        let canonical = Value::Array(parts.iter().map(without_signature).collect()).to_string();
        let a = self.0.hash_one(("a", &canonical));
        let b = self.0.hash_one(("b", &canonical));
        // Real signatures are long opaque base64 strings; length and alphabet are what matter.
        format!("CiQB{a:016x}{b:016x}Ep0BAXLI2nw=")
    }
}

fn without_signature(part: &Value) -> Value {
    match part {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "thoughtSignature")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Checks the request body; `Err` is the message of a 400 INVALID_ARGUMENT.
pub(crate) fn check_request(model: &str, body: &Value, signer: &Signer) -> Result<(), String> {
    let Some(obj) = body.as_object() else {
        return Err("Invalid JSON payload received. Expected an object.".into());
    };
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "contents"
                | "systemInstruction"
                | "system_instruction"
                | "tools"
                | "toolConfig"
                | "tool_config"
                | "generationConfig"
                | "generation_config"
                | "safetySettings"
                | "safety_settings"
                | "cachedContent"
                | "cached_content"
        ) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
            ));
        }
    }
    if let Some(tools) = obj.get("tools") {
        check_tools(tools)?;
    }
    if let Some(config) = obj
        .get("generationConfig")
        .or_else(|| obj.get("generation_config"))
    {
        super::generation::check(model.trim_start_matches("models/"), config)?;
    }
    let contents = match obj.get("contents") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        _ => return Err("* GenerateContentRequest.contents: contents is not specified\n".into()),
    };
    for (i, content) in contents.iter().enumerate() {
        let role = content
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        if role != "user" && role != "model" {
            return Err("Please use a valid role: user, model.".into());
        }
        match content.get("parts") {
            Some(Value::Array(p)) if !p.is_empty() => {}
            _ => {
                return Err(format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            ))
            }
        }
    }
    check_turns(contents, signer)
}

fn check_tools(tools: &Value) -> Result<(), String> {
    let Some(tools) = tools.as_array() else {
        return Err("Invalid value at 'tools' (type.googleapis.com/google.ai.generativelanguage.v1beta.Tool)".into());
    };
    for (t, tool) in tools.iter().enumerate() {
        let decls = tool
            .get("functionDeclarations")
            .or_else(|| tool.get("function_declarations"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (d, decl) in decls.iter().enumerate() {
            let name = decl.get("name").and_then(Value::as_str).unwrap_or("");
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'))
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "* GenerateContentRequest.tools[{t}].function_declarations[{d}].name: Invalid function name. \
                     Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), \
                     dots (.), colons (:) or dashes (-), with a maximum length of 64.\n"
                ));
            }
            if let Some(params) = decl.get("parameters") {
                check_schema(
                    params,
                    &format!("tools[{t}].function_declarations[{d}].parameters"),
                )?;
            }
        }
    }
    Ok(())
}

/// The OpenAPI subset: unknown keywords are rejected, an OBJECT needs properties.
fn check_schema(schema: &Value, at: &str) -> Result<(), String> {
    let Some(map) = schema.as_object() else {
        return Ok(());
    };
    for key in map.keys() {
        if matches!(
            key.as_str(),
            "additionalProperties" | "$schema" | "$id" | "$ref" | "const"
        ) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{key}\" at '{at}': Cannot find field."
            ));
        }
    }
    let is_object = map
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("object"));
    let props = map.get("properties").and_then(Value::as_object);
    if is_object && props.is_none_or(Map::is_empty) {
        let field = at.replace("tools[", "GenerateContentRequest.tools[");
        return Err(format!(
            "* {field}.properties: should be non-empty for OBJECT type\n"
        ));
    }
    for (name, sub) in props.into_iter().flatten() {
        check_schema(sub, &format!("{at}.properties[{name}].value"))?;
    }
    if let Some(items) = map.get("items") {
        check_schema(items, &format!("{at}.items"))?;
    }
    Ok(())
}

fn function_calls(content: &Value) -> Vec<&Value> {
    parts(content)
        .iter()
        .filter(|p| p.get("functionCall").is_some())
        .collect()
}

fn parts(content: &Value) -> &[Value] {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn is_function_response_turn(content: &Value) -> bool {
    parts(content)
        .iter()
        .any(|p| p.get("functionResponse").is_some())
}

/// Function-call turns: signed, placed after a user turn, answered by the next content with one
/// functionResponse per call, in order.
fn check_turns(contents: &[Value], signer: &Signer) -> Result<(), String> {
    for (i, content) in contents.iter().enumerate() {
        let role = content
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        let calls = function_calls(content);
        if role == "model" && !calls.is_empty() {
            let first = calls[0];
            let name = first["functionCall"]
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("");
            match first.get("thoughtSignature").and_then(Value::as_str) {
                None => {
                    return Err(format!(
                        "Function call is missing a thought_signature in functionCall parts. This is required for \
                         tools to work correctly, and missing thought_signature may lead to degraded model \
                         performance. Additional data, function call `default_api:{name}` , position {}. Please \
                         refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.",
                        i + 1
                    ))
                }
                Some(sig) if sig != signer.sign(parts(content)) => return Err("Corrupted thought signature.".into()),
                Some(_) => {}
            }
            let before_ok = i > 0
                && contents[i - 1]
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("user")
                    == "user";
            if !before_ok {
                return Err("Please ensure that function call turn comes immediately after a user turn or after a \
                            function response turn."
                    .into());
            }
            match contents.get(i + 1) {
                // The request may end with the call turn only if nothing answers it yet: not valid here.
                None => {
                    return Err("Please ensure that the number of function response parts is equal to the number of \
                                function call parts of the function call turn."
                        .into())
                }
                Some(next) => check_answer(&calls, next, i + 1)?,
            }
        }
        if role == "user" && is_function_response_turn(content) {
            let prev_calls = i
                .checked_sub(1)
                .map(|p| function_calls(&contents[p]))
                .unwrap_or_default();
            if prev_calls.is_empty() {
                return Err("Please ensure that function response turn comes immediately after a function call turn.".into());
            }
        }
    }
    Ok(())
}

fn check_answer(calls: &[&Value], answer: &Value, index: usize) -> Result<(), String> {
    let responses: Vec<&Value> = parts(answer)
        .iter()
        .filter_map(|p| p.get("functionResponse"))
        .collect();
    if answer.get("role").and_then(Value::as_str).unwrap_or("user") != "user"
        || responses.len() != calls.len()
    {
        return Err("Please ensure that the number of function response parts is equal to the number of function \
                    call parts of the function call turn."
            .into());
    }
    for (j, (call, response)) in calls.iter().zip(&responses).enumerate() {
        let call = &call["functionCall"];
        if response.get("name") != call.get("name") {
            return Err(format!(
                "* GenerateContentRequest.contents[{index}].parts[{j}].function_response.name: the function response \
                 name {} does not match the function call name {} at the same position.\n",
                response.get("name").unwrap_or(&Value::Null),
                call.get("name").unwrap_or(&Value::Null)
            ));
        }
        if call.get("id").is_some() && response.get("id") != call.get("id") {
            return Err(format!(
                "* GenerateContentRequest.contents[{index}].parts[{j}].function_response.id: does not match the id of \
                 the function call at the same position.\n"
            ));
        }
        if !response.get("response").is_some_and(Value::is_object) {
            return Err(format!(
                "Invalid value at 'contents[{index}].parts[{j}].function_response.response' \
                 (type.googleapis.com/google.protobuf.Struct), {}",
                response.get("response").unwrap_or(&Value::Null)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signed_turn(signer: &Signer, calls: &[(&str, Value)]) -> Value {
        let mut parts: Vec<Value> = calls
            .iter()
            .map(|(n, a)| json!({"functionCall": {"name": n, "args": a}}))
            .collect();
        let sig = signer.sign(&parts);
        parts[0]["thoughtSignature"] = json!(sig);
        json!({"role": "model", "parts": parts})
    }

    fn answer(names: &[&str]) -> Value {
        let parts: Vec<Value> = names
            .iter()
            .map(|n| json!({"functionResponse": {"name": n, "response": {"output": "ok"}}}))
            .collect();
        json!({"role": "user", "parts": parts})
    }

    fn request(contents: Vec<Value>) -> Value {
        json!({ "contents": contents })
    }

    #[test]
    fn accepts_a_well_formed_parallel_exchange() {
        let s = Signer::new();
        let turn = signed_turn(
            &s,
            &[
                ("restart_container", json!({"name": "a"})),
                ("restart_container", json!({"name": "b"})),
            ],
        );
        let body = request(vec![
            json!({"role": "user", "parts": [{"text": "go"}]}),
            turn,
            answer(&["restart_container", "restart_container"]),
        ]);
        check_request("gemini-3.8-flash", &body, &s).unwrap();
    }

    #[test]
    fn dropped_and_changed_signatures_are_rejected() {
        let s = Signer::new();
        let user = json!({"role": "user", "parts": [{"text": "go"}]});
        let mut turn = signed_turn(&s, &[("list_webapp_status", json!({}))]);
        turn["parts"][0]
            .as_object_mut()
            .unwrap()
            .remove("thoughtSignature");
        let err = check_request(
            "gemini-3.8-flash",
            &request(vec![user.clone(), turn, answer(&["list_webapp_status"])]),
            &s,
        )
        .unwrap_err();
        assert!(
            err.contains("missing a thought_signature") && err.contains("position 2"),
            "{err}"
        );

        let mut turn = signed_turn(&s, &[("list_webapp_status", json!({}))]);
        turn["parts"][0]["functionCall"]["args"] = json!({"x": 1});
        let err = check_request(
            "gemini-3.8-flash",
            &request(vec![user, turn, answer(&["list_webapp_status"])]),
            &s,
        )
        .unwrap_err();
        assert_eq!(err, "Corrupted thought signature.");
    }

    #[test]
    fn responses_must_match_calls() {
        let s = Signer::new();
        let user = json!({"role": "user", "parts": [{"text": "go"}]});
        let turn = signed_turn(&s, &[("a", json!({})), ("b", json!({}))]);
        let err = check_request(
            "gemini-3.8-flash",
            &request(vec![user.clone(), turn.clone(), answer(&["a"])]),
            &s,
        )
        .unwrap_err();
        assert!(err.contains("number of function response parts"), "{err}");
        let err = check_request(
            "gemini-3.8-flash",
            &request(vec![user.clone(), turn.clone(), answer(&["b", "a"])]),
            &s,
        )
        .unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        let mut bad = answer(&["a", "b"]);
        bad["parts"][1]["functionResponse"]["response"] = json!("plain string");
        let err = check_request(
            "gemini-3.8-flash",
            &request(vec![user.clone(), turn, bad]),
            &s,
        )
        .unwrap_err();
        assert!(err.contains("google.protobuf.Struct"), "{err}");
        let err = check_request("gemini-3.8-flash", &request(vec![user, answer(&["a"])]), &s)
            .unwrap_err();
        assert!(
            err.contains("immediately after a function call turn"),
            "{err}"
        );
    }

    #[test]
    fn schema_subset_is_enforced() {
        let s = Signer::new();
        let user = json!({"role": "user", "parts": [{"text": "go"}]});
        let body = json!({"contents": [user], "tools": [{"functionDeclarations": [
            {"name": "list", "description": "d", "parameters": {"type": "object", "properties": {}}}
        ]}]});
        assert!(check_request("gemini-3.8-flash", &body, &s)
            .unwrap_err()
            .contains("should be non-empty for OBJECT type"));
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "go"}]}], "tools": [{"functionDeclarations": [
            {"name": "r", "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": false}}
        ]}]});
        assert!(check_request("gemini-3.8-flash", &body, &s)
            .unwrap_err()
            .contains("Unknown name \"additionalProperties\""));
    }
}
