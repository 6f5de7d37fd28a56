//! The tool declarations the model sees, and the parsing of a model's call into a typed [`Call`].

use serde_json::{json, Value};

use super::guard::ToolError;
use crate::llm::ToolSpec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    ListStatus,
    Restart { name: String },
    CheckHealth,
    Logs { name: String, lines: usize },
    Inspect { name: String },
}

const LIST: &str = "list_webapp_status";
const RESTART: &str = "restart_container";
const HEALTH: &str = "check_webapp_health";
const LOGS: &str = "get_container_logs";
const INSPECT: &str = "inspect_container";

pub fn tool_names() -> [&'static str; 5] {
    [LIST, RESTART, HEALTH, LOGS, INSPECT]
}

fn no_args() -> Value {
    json!({ "type": "object", "properties": {} })
}

fn name_arg() -> Value {
    json!({ "type": "string", "description": "Exact container name as listed by list_webapp_status" })
}

pub fn tool_specs() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: LIST.into(),
            description: "List every replica of the service being healed with its diagnosis: status, exit code, \
                          oom_killed, health, restart count, memory use and limit, class (the kind of failure), \
                          action (what may be done to it), reason, and whether it is part of this run."
                .into(),
            parameters: no_args(),
        },
        ToolSpec {
            name: RESTART.into(),
            description: "Heal one replica with the action its diagnosis allows: start an exited one, unpause a \
                          paused one, restart a running one that is unhealthy or hung. Returns once the replica serves \
                          again (or not), with that verification. Refused for replicas that serve or were stopped on \
                          purpose, for containers outside the service, for replicas that crash on every start, and \
                          when the replica's restart budget is spent."
                .into(),
            parameters: json!({ "type": "object", "properties": { "name": name_arg() }, "required": ["name"] }),
        },
        ToolSpec {
            name: HEALTH.into(),
            description: "Check the service: its health URL through the load balancer and how many replicas serve.".into(),
            parameters: no_args(),
        },
        ToolSpec {
            name: LOGS.into(),
            description: "The last lines of one replica's logs (at most 100 lines, 4 KB).".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "name": name_arg(),
                    "lines": { "type": "integer", "description": "How many lines (1-100, default 30)" }
                },
                "required": ["name"]
            }),
        },
        ToolSpec {
            name: INSPECT.into(),
            description: "Detailed state of one replica (exit code, OOM kill, health, restarts, memory).".into(),
            parameters: json!({ "type": "object", "properties": { "name": name_arg() }, "required": ["name"] }),
        },
    ]
}

/// Validates a model's call. Arguments must be a JSON object; extra fields are refused so that a
/// confused model hears about it rather than having its intent silently dropped.
pub fn parse_call(tool: &str, args: &Value) -> Result<Call, ToolError> {
    let invalid = |reason: String| ToolError::InvalidArgs {
        tool: tool.to_string(),
        reason,
    };
    let empty = serde_json::Map::new();
    let obj = match args {
        Value::Object(m) => m,
        Value::Null => &empty,
        other => {
            return Err(invalid(format!(
                "arguments must be a JSON object, got {}",
                kind(other)
            )))
        }
    };
    let allow_only = |keys: &[&str]| -> Result<(), ToolError> {
        match obj.keys().find(|k| !keys.contains(&k.as_str())) {
            Some(k) => Err(invalid(format!(
                "unexpected argument {:?}",
                super::guard::bounded(k, 64)
            ))),
            None => Ok(()),
        }
    };
    let name = || -> Result<String, ToolError> {
        match obj.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(other) => Err(invalid(format!(
                "\"name\" must be a non-empty string, got {}",
                kind(other)
            ))),
            None => Err(invalid("missing required argument \"name\"".into())),
        }
    };
    match tool {
        LIST => allow_only(&[]).map(|_| Call::ListStatus),
        HEALTH => allow_only(&[]).map(|_| Call::CheckHealth),
        RESTART => {
            allow_only(&["name"])?;
            Ok(Call::Restart { name: name()? })
        }
        INSPECT => {
            allow_only(&["name"])?;
            Ok(Call::Inspect { name: name()? })
        }
        LOGS => {
            allow_only(&["name", "lines"])?;
            let lines = match obj.get("lines") {
                None => 30,
                Some(v) => match v.as_f64() {
                    Some(n) if n >= 1.0 && n.fract() == 0.0 => {
                        (n as usize).min(super::MAX_LOG_LINES)
                    }
                    _ => {
                        return Err(invalid(format!(
                            "\"lines\" must be a whole number from 1 to 100, got {v}"
                        )))
                    }
                },
            };
            Ok(Call::Logs {
                name: name()?,
                lines,
            })
        }
        other => Err(ToolError::UnknownTool(
            super::guard::bounded(other, 64),
            tool_names().join(", "),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_parse_and_bad_arguments_are_explained() {
        assert_eq!(parse_call(LIST, &json!({})).unwrap(), Call::ListStatus);
        assert_eq!(parse_call(LIST, &Value::Null).unwrap(), Call::ListStatus);
        assert_eq!(
            parse_call(RESTART, &json!({"name": "x-1"})).unwrap(),
            Call::Restart { name: "x-1".into() }
        );
        assert_eq!(
            parse_call(LOGS, &json!({"name": "x", "lines": 500})).unwrap(),
            Call::Logs {
                name: "x".into(),
                lines: 100
            }
        );
        let err = |t, a| parse_call(t, &a).unwrap_err().to_string();
        assert!(err(RESTART, json!({})).contains("missing required argument \"name\""));
        assert!(err(RESTART, json!({"name": 3})).contains("must be a non-empty string"));
        assert!(err(RESTART, json!("x")).contains("must be a JSON object"));
        assert!(err(RESTART, json!({"name": "x", "force": true}))
            .contains("unexpected argument \"force\""));
        assert!(err(LOGS, json!({"name": "x", "lines": -1})).contains("whole number"));
        assert!(err("docker_exec", json!({})).contains("unknown tool \"docker_exec\""));
    }

    #[test]
    fn every_spec_is_an_object_schema() {
        for s in tool_specs() {
            assert_eq!(s.parameters["type"], "object", "{}", s.name);
        }
        assert_eq!(tool_specs().len(), tool_names().len());
    }
}
