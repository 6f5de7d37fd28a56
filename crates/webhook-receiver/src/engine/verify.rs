//! Verification by code: after a run's actions, poll until every replica the run is responsible
//! for serves (running, healthy where it has a healthcheck, answering the agent's probe where it
//! was hung) and the service answers through its URL. A replica that dies again after the
//! agent's action fails the verification at once instead of at the timeout.

use std::time::Duration;

use serde_json::{json, Value};

use crate::diagnosis::{probe_replica, status_str, Depth};
use crate::incidents::FailureClass;
use crate::tools::{Acted, Toolbox};

const POLL: Duration = Duration::from_millis(200);

pub struct Verification {
    pub ok: bool,
    /// What was found; `reason` says why it failed.
    pub detail: Value,
}

pub async fn verify(
    tools: &Toolbox,
    acted: &[Acted],
    must_serve: &[String],
    timeout: Duration,
) -> Verification {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut names: Vec<&str> = Vec::new();
    for n in acted
        .iter()
        .map(|a| a.container.name.as_str())
        .chain(must_serve.iter().map(String::as_str))
    {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    loop {
        let (ok, detail, fatal) = check_once(tools, acted, &names).await;
        if ok || fatal || tokio::time::Instant::now() + POLL > deadline {
            return Verification { ok, detail };
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One look: (passed, detail, failed for good).
async fn check_once(tools: &Toolbox, acted: &[Acted], names: &[&str]) -> (bool, Value, bool) {
    let depth = Depth {
        service: true,
        ..Depth::STATE_ONLY
    };
    let obs = match tools.observe(depth).await {
        Ok(o) => o,
        Err(e) => {
            return (
                false,
                json!({ "reason": format!("could not observe the replicas: {e}") }),
                false,
            )
        }
    };
    let mut not_serving = Vec::new();
    let mut died_again = Vec::new();
    for name in names {
        match obs.get(name) {
            Some(o) if o.state.is_serving() => {}
            // Stopped by someone meanwhile: it is theirs now, not a failure of the run.
            Some(o) if o.diagnosis.class == FailureClass::StoppedOnPurpose => {}
            Some(o) => {
                let after_action = acted.iter().find(|a| a.container.name == *name);
                if let Some(a) = after_action {
                    if o.state.is_exited() && o.state.finished_at.is_some_and(|f| f >= a.at) {
                        died_again.push(format!(
                            "{name} exited again (code {}) after it was {}",
                            o.state.exit_code.unwrap_or_default(),
                            match a.action {
                                crate::incidents::ActionKind::Restart => "restarted",
                                crate::incidents::ActionKind::Unpause => "unpaused",
                                _ => "started",
                            }
                        ));
                    }
                }
                not_serving.push(json!({
                    "name": name,
                    "status": status_str(o.state.status),
                    "health": o.diagnosis.health,
                }));
            }
            None => not_serving.push(json!({ "name": name, "status": "gone" })),
        }
    }
    let serving = obs.replicas.iter().filter(|o| o.state.is_serving()).count();
    let url_ok = obs.service_probe.as_ref().is_none_or(|p| p.ok);
    let mut detail = json!({
        "replicas_serving": serving,
        "replicas_total": obs.replicas.len(),
        "not_serving": not_serving,
        "http": obs.service_probe,
    });
    if !died_again.is_empty() {
        detail["reason"] = json!(died_again.join("; "));
        return (false, detail, true);
    }
    if !detail["not_serving"]
        .as_array()
        .is_some_and(|a| a.is_empty())
    {
        detail["reason"] = json!("not every replica serves again yet");
        return (false, detail, false);
    }
    if !url_ok {
        detail["reason"] = json!("the service URL does not answer yet");
        return (false, detail, false);
    }
    // Docker's word is not enough for a replica that was hung: it must answer the agent itself.
    for a in acted.iter().filter(|a| a.class == FailureClass::Hung) {
        if let Some(o) = obs.get(&a.container.name) {
            if let Some(p) = probe_replica(tools.context(), &o.state).await {
                if p.unanswered() {
                    detail["reason"] =
                        json!(format!("{} still answers no probe", a.container.name));
                    return (false, detail, false);
                }
            }
        }
    }
    (true, detail, false)
}
