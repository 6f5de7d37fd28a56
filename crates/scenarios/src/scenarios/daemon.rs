//! The Docker daemon stopped and started again, as a host reboot or a Docker upgrade does.
//! Docker starts the `unless-stopped` services again by itself; the replicas (`restart: "no"`:
//! the agent heals them) stay exited, with exit code 0 and no event an agent could have seen.
//! Docker's `unless-stopped` would restore them, so the agent must: every replica serving again
//! within 30 s of Docker answering, without an alert needed. A replica an operator stopped
//! before the restart stays stopped.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::replicas;
use crate::docker::{now, Op, OpKind};
use crate::dockerd;
use crate::runner::Injected;
use crate::score::{CheckResult, Expect, Want};
use crate::stack::{say, Stack};

/// The promise: serving again this soon after Docker answers.
const WITHIN_S: f64 = 30.0;
/// How long the harness watches for the replicas and the other services.
const WATCH_S: f64 = 75.0;
/// From the operator's stop to the daemon's restart: twice the agent's `STOP_GRACE` (3 s).
const BEFORE_REBOOT: Duration = Duration::from_secs(6);

pub async fn restart(stack: &Stack, operator_stops_one: bool) -> Result<Injected> {
    let names = replicas(stack, 3).await?;
    let stopped: Option<String> = operator_stops_one.then(|| names[0].clone());
    if let Some(s) = &stopped {
        stack.docker.stop(std::slice::from_ref(s), 10).await?;
        // The operator's stop is a while before the reboot, as in life: clear of the agent's
        // STOP_GRACE (3 s before a loss of contact, where a stop may be the daemon's own
        // shutdown and is restored, as docs/agent.md says). Waiting exactly the grace left the
        // case on that boundary.
        tokio::time::sleep(BEFORE_REBOOT).await;
    }
    let must_serve: Vec<String> = names
        .iter()
        .filter(|n| Some(*n) != stopped.as_ref())
        .cloned()
        .collect();
    let infra: Vec<String> = stack
        .infrastructure()
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect();
    say("stopping and starting dockerd: every container on this machine stops");
    let r = dockerd::restart().await?;
    say(format!(
        "dockerd: SIGTERM to pid {}, exited after {:.1}s, the new daemon (pid {}) answered {:.1}s later",
        r.old_pid,
        r.exited_at - r.term_at,
        r.new_pid.map(|p| p.to_string()).unwrap_or("?".into()),
        r.answered_at - r.exited_at
    ));
    // The shutdown stopped every container of the project; the new daemon started the
    // `unless-stopped` ones. Neither is the agent's doing.
    let mut all = names.clone();
    all.extend(infra.iter().cloned());
    stack.docker.record(Op {
        kind: OpKind::Stop,
        what: format!("dockerd shutdown (SIGTERM to pid {})", r.old_pid),
        containers: all,
        project: None,
        start: r.term_at,
        end: r.exited_at + 1.0,
        ok: true,
    });
    stack.docker.record(Op {
        kind: OpKind::Start,
        what: "the new dockerd starts the unless-stopped services".into(),
        containers: infra.clone(),
        project: None,
        start: r.exited_at,
        end: r.answered_at + 30.0,
        ok: true,
    });
    *stack.fresh_prometheus.lock().expect("lock") = true;
    if let Err(e) = stack.events.resume(r.term_at) {
        say(format!("events: could not follow the new daemon: {e:#}"));
    }

    // The fault took effect when no replica process outlived the restart: each is down, or
    // was started after the old daemon exited (by the agent: their policy is `no`).
    let first = stack.docker.inspect(&names).await.unwrap_or_default();
    let outlived: Vec<String> = first
        .iter()
        .filter(|v| {
            let started = v["State"]["StartedAt"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_micros() as f64 / 1e6)
                .unwrap_or(0.0);
            v["State"]["Status"] == "running" && started < r.exited_at
        })
        .map(|v| {
            v["Name"]
                .as_str()
                .unwrap_or("?")
                .trim_start_matches('/')
                .to_string()
        })
        .collect();
    let mut serving_at: Option<f64> = None;
    let mut infra_back_at: Option<f64> = None;
    let mut infra_state: HashMap<String, String> = HashMap::new();
    while now() - r.answered_at < WATCH_S && (serving_at.is_none() || infra_back_at.is_none()) {
        if serving_at.is_none() && stack.serving(&must_serve).await.values().all(|s| *s) {
            serving_at = Some(now());
            say(format!(
                "replicas serving {:.1}s after Docker answered",
                now() - r.answered_at
            ));
        }
        if infra_back_at.is_none() {
            let views = stack.views(&infra).await.unwrap_or_default();
            infra_state = views
                .iter()
                .map(|v| {
                    (
                        v.name.clone(),
                        format!("{} {}", v.status, v.health.as_deref().unwrap_or("")),
                    )
                })
                .collect();
            if views.len() == infra.len() && views.iter().all(|v| v.docker_serving()) {
                infra_back_at = Some(now());
                say(format!(
                    "every other service back {:.1}s after Docker answered",
                    now() - r.answered_at
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ttf = serving_at.map(|t| t - r.answered_at);

    let mut inj = Injected::new(
        format!(
            "{}dockerd stopped (SIGTERM) and started again ({:.1}s until Docker answered)",
            stopped
                .as_ref()
                .map(|s| format!("docker stop {s}; "))
                .unwrap_or_default(),
            r.answered_at - r.term_at
        ),
        r.answered_at,
    );
    inj.harness.push(CheckResult::harness(
        "dockerd restarted",
        r.new_pid.is_some_and(|p| p != r.old_pid),
        format!("pid {} -> {:?}", r.old_pid, r.new_pid),
    ));
    inj.harness.push(CheckResult::harness(
        "no replica outlived the restart (all stopped with the daemon)",
        first.len() == names.len() && outlived.is_empty(),
        format!(
            "{} inspected; running since before the restart: {}",
            first.len(),
            if outlived.is_empty() {
                "none".to_string()
            } else {
                outlived.join(", ")
            }
        ),
    ));
    // The agent is one of the services Docker brings back; whether it came back is the
    // agent's part, the rest (nginx, Prometheus, ...) the stack's.
    let (agent_state, others_down): (Vec<String>, Vec<String>) = {
        let agent: Vec<String> = infra_state
            .iter()
            .filter(|(n, _)| n.contains("webhook-receiver"))
            .map(|(n, s)| format!("{n}: {s}"))
            .collect();
        let down: Vec<String> = infra_state
            .iter()
            .filter(|(n, s)| !n.contains("webhook-receiver") && !s.starts_with("running"))
            .map(|(n, s)| format!("{n}: {s}"))
            .collect();
        (agent, down)
    };
    inj.harness.push(CheckResult::harness(
        "every other service came back by itself (restart: unless-stopped)",
        infra_back_at.is_some() || others_down.is_empty(),
        match infra_back_at {
            Some(t) => format!("{:.1}s after Docker answered", t - r.answered_at),
            None => format!("not within {WATCH_S:.0}s; down: {}", others_down.join(", ")),
        },
    ));
    inj.harness.push(CheckResult::agent(
        "the agent came back (running, healthy)",
        infra_back_at.is_some() || agent_state.iter().all(|s| s.contains("running healthy")),
        agent_state.join(", "),
    ));
    inj.harness.push(CheckResult::agent(
        format!("every replica serving within {WITHIN_S:.0}s of Docker answering, no alert needed"),
        ttf.is_some_and(|t| t <= WITHIN_S),
        match ttf {
            Some(t) => format!("{t:.1}s"),
            None => format!(
                "not within {WATCH_S:.0}s; waited for: {}",
                must_serve.join(", ")
            ),
        },
    ));
    inj.targets = names.clone();
    inj.expect = must_serve
        .iter()
        .map(|n| Expect::once(n, Want::Start))
        .collect();
    inj.must_serve = must_serve;
    inj.ttf = ttf.into_iter().collect();
    // Long enough after the restart for a couple of resyncs (RECONCILE_INTERVAL 10 s): a
    // replica the operator stopped must still be stopped then.
    inj.min_observe = Duration::from_secs_f64(now() - r.term_at + 20.0);
    inj.timeout = inj.min_observe + Duration::from_secs(45);
    inj.figures.insert("dockerd".into(), json!(r));
    inj.figures.insert(
        "docker_down_seconds".into(),
        json!(r.answered_at - r.term_at),
    );
    inj.figures.insert(
        "replicas_serving_after_docker_answered_s".into(),
        json!(ttf),
    );
    inj.figures.insert(
        "other_services_back_after_docker_answered_s".into(),
        json!(infra_back_at.map(|t| t - r.answered_at)),
    );
    if let Some(s) = stopped {
        inj.figures.insert("operator_stopped".into(), json!(s));
    }
    Ok(inj)
}
