//! Verification by code: after a run's restarts, poll until every restarted replica serves (running,
//! and healthy where it has a healthcheck) and the service answers through its health URL.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::runtime::ContainerRef;
use crate::tools::Toolbox;

const POLL: Duration = Duration::from_millis(200);

pub struct Verification {
    pub ok: bool,
    pub detail: Value,
}

pub async fn verify(
    tools: &Toolbox,
    restarted: &[ContainerRef],
    must_serve: &[String],
    timeout: Duration,
) -> Verification {
    let deadline = Instant::now() + timeout;
    loop {
        let (ok, detail) = check_once(tools, restarted, must_serve).await;
        if ok || Instant::now() + POLL > deadline {
            return Verification { ok, detail };
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn check_once(
    tools: &Toolbox,
    restarted: &[ContainerRef],
    must_serve: &[String],
) -> (bool, Value) {
    let states = match tools.observe().await {
        Ok(s) => s,
        Err(e) => return (false, json!({ "error": e.to_string() })),
    };
    // Each name once: a replica is usually both restarted and one that must serve.
    let mut names: Vec<&str> = Vec::new();
    for name in restarted
        .iter()
        .map(|r| r.name.as_str())
        .chain(must_serve.iter().map(String::as_str))
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut not_serving = Vec::new();
    for name in names {
        match states.iter().find(|s| s.container.name == name) {
            Some(s) if s.is_serving() => {}
            Some(s) => {
                not_serving.push(json!({ "name": name, "status": s.status, "health": s.health }))
            }
            None => not_serving.push(json!({ "name": name, "status": "gone" })),
        }
    }
    let http = tools.probe_url().await;
    let serving = states.iter().filter(|s| s.is_serving()).count();
    (
        not_serving.is_empty() && http.ok,
        json!({
            "replicas_serving": serving,
            "replicas_total": states.len(),
            "not_serving": not_serving,
            "http": http.detail,
        }),
    )
}
