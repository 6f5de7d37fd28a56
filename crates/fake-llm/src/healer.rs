//! A Gemini "model" that heals by reading the conversation, for the end-to-end stack.
//!
//! Turn by turn, as a capable model would: restart (in parallel) every replica the agent's
//! first-turn diagnosis allows an action on (without a diagnosis, call `list_webapp_status`
//! first and restart every replica its result shows as not running or not healthy); when every
//! restart came back with its verification serving, answer with a summary at once, else call
//! `check_webapp_health` and then summarise.
//!
//! Replicas are found anywhere in the `list_webapp_status` result as objects with a string `name`
//! and at least one of: `needs_healing` (bool, wins when present), `status` (Docker state:
//! anything but `running`/`healthy`/`restarting` needs healing), `health` or `health_status`
//! (`unhealthy` needs healing).

use serde_json::{json, Value};

use crate::script::{call, Reply};

/// The reply to a (validated) `generateContent` request body.
pub fn next_reply(request: &Value) -> Reply {
    let declared = declared_tools(request);
    let has = |name: &str| declared.iter().any(|d| d["name"] == name);
    let contents = request["contents"].as_array().cloned().unwrap_or_default();
    let Some(last) = contents.last() else {
        return Reply::Text("Nothing to do.".into());
    };
    let responses: Vec<&Value> = parts(last)
        .iter()
        .filter_map(|p| p.get("functionResponse"))
        .collect();

    if responses.is_empty() {
        if let Some(names) = diagnosed(&contents) {
            if names.is_empty() || !has("restart_container") {
                return Reply::Text(summary(&contents, None));
            }
            let arg = restart_argument(&declared);
            return Reply::Calls(
                names
                    .iter()
                    .map(|n| call("restart_container", json!({ arg.clone(): n })))
                    .collect(),
            );
        }
        return if has("list_webapp_status") {
            Reply::Calls(vec![call("list_webapp_status", json!({}))])
        } else {
            Reply::Text("I cannot diagnose the service: no status tool is available.".into())
        };
    }
    let answered = |name: &str| responses.iter().any(|r| r["name"] == name);

    if answered("list_webapp_status") {
        let mut down = Vec::new();
        for r in responses
            .iter()
            .filter(|r| r["name"] == "list_webapp_status")
        {
            collect_down(&r["response"], &mut down);
        }
        down.dedup();
        if !down.is_empty() && has("restart_container") {
            let arg = restart_argument(&declared);
            return Reply::Calls(
                down.iter()
                    .map(|n| call("restart_container", json!({ arg.clone(): n })))
                    .collect(),
            );
        }
        if has("check_webapp_health") {
            return Reply::Calls(vec![call("check_webapp_health", json!({}))]);
        }
        return Reply::Text(summary(&contents, None));
    }
    let verified = responses
        .iter()
        .filter(|r| r["name"] == "restart_container")
        .all(|r| crate::realistic::serving_verified(&r["response"]));
    if answered("restart_container") && !verified && has("check_webapp_health") {
        return Reply::Calls(vec![call("check_webapp_health", json!({}))]);
    }
    let health = responses
        .iter()
        .find(|r| r["name"] == "check_webapp_health")
        .map(|r| r["response"].clone());
    Reply::Text(summary(&contents, health.as_ref()))
}

/// The replicas the first user message's diagnosis allows an action on, if it carries one.
fn diagnosed(contents: &[Value]) -> Option<Vec<String>> {
    let first = contents.iter().find(|c| c["role"] == "user")?;
    let text: String = parts(first)
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect();
    let block = crate::realistic::fenced_json(&text)
        .into_iter()
        .find(|b| b.get("diagnosis").is_some())?;
    Some(
        block["diagnosis"]["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["in_this_run"] != false)
            .filter(|r| {
                matches!(
                    r["allowed_action"].as_str(),
                    Some("start" | "restart" | "unpause")
                )
            })
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect(),
    )
}

fn parts(content: &Value) -> &[Value] {
    content["parts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn declared_tools(request: &Value) -> Vec<Value> {
    request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| {
            t["functionDeclarations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// The argument `restart_container` takes: its first required property, else `name`.
fn restart_argument(declared: &[Value]) -> String {
    let decl = declared.iter().find(|d| d["name"] == "restart_container");
    let params = decl.map(|d| &d["parameters"]);
    params
        .and_then(|p| p["required"].get(0))
        .and_then(Value::as_str)
        .or_else(|| {
            params
                .and_then(|p| p["properties"].as_object())
                .and_then(|o| o.keys().next().map(String::as_str))
        })
        .unwrap_or("name")
        .to_string()
}

/// Names of the replicas that need healing, anywhere in `v`.
pub fn collect_down(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(name) = map.get("name").and_then(Value::as_str) {
                if let Some(need) = needs_healing(map) {
                    if need && !out.iter().any(|n| n == name) {
                        out.push(name.to_string());
                    }
                    return;
                }
            }
            for child in map.values() {
                collect_down(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_down(i, out)),
        _ => {}
    }
}

/// `None` when the object does not look like a replica.
fn needs_healing(map: &serde_json::Map<String, Value>) -> Option<bool> {
    if let Some(b) = map.get("needs_healing").and_then(Value::as_bool) {
        return Some(b);
    }
    let health = ["health", "health_status"]
        .iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
        .map(str::to_ascii_lowercase);
    let status = ["status", "state"]
        .iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
        .map(str::to_ascii_lowercase);
    if health.is_none() && status.is_none() {
        return None;
    }
    let unhealthy =
        health.as_deref() == Some("unhealthy") || status.as_deref() == Some("unhealthy");
    let not_running = status
        .as_deref()
        .is_some_and(|s| !matches!(s, "running" | "healthy" | "restarting" | "starting"));
    Some(unhealthy || not_running)
}

fn summary(contents: &[Value], health: Option<&Value>) -> String {
    let mut restarted = Vec::new();
    for c in contents.iter().filter(|c| c["role"] == "model") {
        for p in parts(c) {
            let fc = &p["functionCall"];
            if fc["name"] == "restart_container" {
                if let Some(args) = fc["args"].as_object() {
                    restarted.extend(args.values().filter_map(Value::as_str).map(str::to_string));
                }
            }
        }
    }
    let health = health.map(|h| {
        let text = h.to_string();
        if text.chars().count() > 200 {
            format!("{}…", text.chars().take(200).collect::<String>())
        } else {
            text
        }
    });
    let checked = health
        .map(|h| format!(" check_webapp_health then reported {h}."))
        .unwrap_or_default();
    if restarted.is_empty() {
        format!("All replicas were already running and healthy, so nothing was restarted.{checked}")
    } else {
        format!(
            "Replicas {} were down (exited or unhealthy); I restarted them in parallel.{checked}",
            restarted.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(contents: Value) -> Value {
        json!({
            "contents": contents,
            "tools": [{"functionDeclarations": [
                {"name": "list_webapp_status", "description": "d"},
                {"name": "restart_container", "description": "d", "parameters": {"type": "object", "properties": {"container": {"type": "string"}}, "required": ["container"]}},
                {"name": "check_webapp_health", "description": "d"}
            ]}]
        })
    }

    fn response(name: &str, output: Value) -> Value {
        json!({"role": "user", "parts": [{"functionResponse": {"name": name, "response": {"output": output}}}]})
    }

    #[test]
    fn walks_diagnose_restart_verify_summarise() {
        let user = json!({"role": "user", "parts": [{"text": "alert"}]});
        assert_eq!(
            next_reply(&req(json!([user]))),
            Reply::Calls(vec![call("list_webapp_status", json!({}))])
        );

        let status = json!({"service": "webapp", "replicas": [
            {"name": "app-webapp-1", "status": "running", "health": "healthy"},
            {"name": "app-webapp-2", "status": "exited", "exit_code": 137},
            {"name": "app-webapp-3", "status": "running", "health": "unhealthy"}
        ]});
        let r = next_reply(&req(
            json!([user, {"role": "model", "parts": [{"functionCall": {"name": "list_webapp_status", "args": {}}}]}, response("list_webapp_status", status)]),
        ));
        assert_eq!(
            r,
            Reply::Calls(vec![
                call("restart_container", json!({"container": "app-webapp-2"})),
                call("restart_container", json!({"container": "app-webapp-3"}))
            ])
        );

        let restarted = json!({"role": "model", "parts": [{"functionCall": {"name": "restart_container", "args": {"container": "app-webapp-2"}}}]});
        let r = next_reply(&req(json!([
            user,
            restarted,
            response("restart_container", json!("ok"))
        ])));
        assert_eq!(
            r,
            Reply::Calls(vec![call("check_webapp_health", json!({}))])
        );

        let r = next_reply(&req(json!([
            user,
            restarted,
            response("check_webapp_health", json!({"healthy": true}))
        ])));
        let Reply::Text(t) = r else { panic!("{r:?}") };
        assert!(t.contains("app-webapp-2") && t.contains("healthy"), "{t}");
    }

    #[test]
    fn with_the_agents_diagnosis_a_plain_crash_takes_two_turns() {
        let diag = json!({"diagnosis": {"service": "webapp", "replicas": [
            {"name": "app-webapp-1", "in_this_run": false, "allowed_action": "none"},
            {"name": "app-webapp-2", "in_this_run": true, "allowed_action": "start"},
            {"name": "app-webapp-3", "in_this_run": false, "allowed_action": "start"}
        ]}});
        let user =
            json!({"role": "user", "parts": [{"text": format!("heal\n```json\n{diag}\n```\n")}]});
        assert_eq!(
            next_reply(&req(json!([user]))),
            Reply::Calls(vec![call(
                "restart_container",
                json!({"container": "app-webapp-2"})
            )])
        );
        let restarted = json!({"role": "model", "parts": [{"functionCall": {"name": "restart_container", "args": {"container": "app-webapp-2"}}}]});
        let answer = response(
            "restart_container",
            json!({"name": "app-webapp-2", "verification": {"serving": true}}),
        );
        let r = next_reply(&req(json!([user, restarted, answer])));
        assert!(matches!(r, Reply::Text(_)), "{r:?}");
        let not_yet = response(
            "restart_container",
            json!({"name": "app-webapp-2", "verification": {"serving": false}}),
        );
        let r = next_reply(&req(json!([user, restarted, not_yet])));
        assert_eq!(
            r,
            Reply::Calls(vec![call("check_webapp_health", json!({}))])
        );
    }

    #[test]
    fn needs_healing_flag_wins() {
        let mut out = Vec::new();
        collect_down(
            &json!([{"name": "a", "status": "running", "needs_healing": true}, {"name": "b", "status": "exited", "needs_healing": false}]),
            &mut out,
        );
        assert_eq!(out, ["a"]);
    }
}
