//! The `fake-gemini` binary as the stack runs it: env config, healthcheck, auth, a healing turn.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn healthcheck(port: u16) -> bool {
    Command::new(env!("CARGO_BIN_EXE_fake-gemini"))
        .arg("healthcheck")
        .env("PORT", port.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn binary_serves_the_healer_with_latency_and_auth() {
    let port = free_port();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_fake-gemini"))
            .env("PORT", port.to_string())
            .env("FAKE_LATENCY_MS", "200")
            .env("FAKE_GEMINI_API_KEY", "stack-key")
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while !healthcheck(port) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "fake-gemini did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://127.0.0.1:{port}/v1beta/models/gemini-3.5-flash:generateContent");
    let body = json!({
        "contents": [{"role": "user", "parts": [{"text": "replica down"}]}],
        "tools": [{"functionDeclarations": [{"name": "list_webapp_status", "description": "status"}]}]
    });
    let http = reqwest::Client::new();
    let denied = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(denied.status(), 403);
    let denied: Value = denied.json().await.unwrap();
    assert_eq!(denied["error"]["status"], "PERMISSION_DENIED");

    let t0 = Instant::now();
    let ok = http
        .post(&url)
        .header("x-goog-api-key", "stack-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert_eq!(ok.status(), 200);
    let ok: Value = ok.json().await.unwrap();
    let part = &ok["candidates"][0]["content"]["parts"][0];
    assert_eq!(part["functionCall"]["name"], "list_webapp_status");
    assert!(part["thoughtSignature"].as_str().unwrap().len() > 20);
}

#[tokio::test]
async fn binary_serves_the_realistic_brain_and_refuses_unknown_brains() {
    let bad = Command::new(env!("CARGO_BIN_EXE_fake-gemini"))
        .env("PORT", free_port().to_string())
        .env("FAKE_BRAIN", "genius")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("FAKE_BRAIN must be healer or realistic"));

    let port = free_port();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_fake-gemini"))
            .env("PORT", port.to_string())
            .env("FAKE_LATENCY_MS", "0")
            .env("FAKE_BRAIN", "realistic")
            .env("FAKE_SEED", "7")
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while !healthcheck(port) {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The agent's first message carries the diagnosis: no list call is needed.
    let diagnosis = json!({"diagnosis": {"service": "webapp", "replicas": [
        {"name": "p-webapp-1", "status": "exited", "exit_code": 137, "allowed_action": "start"}]}});
    let body = json!({
        "contents": [{"role": "user", "parts": [{"text": format!("```json\n{diagnosis}\n```")}]}],
        "tools": [{"functionDeclarations": [
            {"name": "list_webapp_status", "description": "status"},
            {"name": "restart_container", "description": "restart", "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}
        ]}]
    });
    let reply: Value = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/v1beta/models/m:generateContent"
        ))
        .header("x-goog-api-key", "any")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts = reply["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap();
    // Whatever its persona, it acts (or claims to): never the list call the diagnosis made moot.
    assert!(!parts.is_empty());
    assert!(
        parts
            .iter()
            .all(|p| p["functionCall"]["name"] != "list_webapp_status"),
        "{parts:?}"
    );
}
