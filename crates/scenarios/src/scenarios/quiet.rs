//! Faults where the right action is none: replicas stopped on purpose, alerts with nothing
//! wrong, problems outside the agent's scope. The cases that rest on an alert watch long enough
//! for Alertmanager to repeat it: a repeat must not be re-run as a new incident.

use std::time::Duration;

use anyhow::Result;
use futures_util::StreamExt;

use super::replicas;
use crate::clients::{webhook, AlertSpec};
use crate::docker::now;
use crate::runner::Injected;
use crate::score::{Check, CheckResult};
use crate::stack::Stack;

fn classes(classes: &[&str]) -> Vec<String> {
    classes.iter().map(|c| c.to_string()).collect()
}

/// Long enough to see the alert fire and repeat once.
fn through_a_repeat(stack: &Stack, inj: &mut Injected) {
    inj.min_observe = stack.cfg.repeat_interval + Duration::from_secs(12);
    inj.timeout = inj.min_observe + Duration::from_secs(60);
    inj.min_webhooks = Some(2);
}

pub async fn docker_stop(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 3).await?;
    let victim = names[0].clone();
    stack.docker.stop(std::slice::from_ref(&victim), 10).await?;
    let v = stack.view(&victim).await?;
    let mut inj = Injected::new(format!("docker stop {victim}"), now());
    inj.harness.push(CheckResult::harness(
        format!("{victim} exited 0 (asked to stop)"),
        v.status == "exited" && v.exit_code == 0,
        format!("{} exit {}", v.status, v.exit_code),
    ));
    inj.must_serve = names[1..].to_vec();
    through_a_repeat(stack, &mut inj);
    inj.checks = vec![
        Check::Recorded { min: 1, max: 1 },
        Check::RecordedAsNoOp,
        Check::Class {
            replica: Some(victim),
            classes: classes(&["stopped_on_purpose"]),
        },
    ];
    Ok(inj)
}

pub async fn compose_stop(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 1).await?;
    stack
        .docker
        .compose(&stack.cfg.project, &["stop", &stack.cfg.service])
        .await?;
    let views = stack.views(&names).await?;
    let stopped = views
        .iter()
        .filter(|v| v.status == "exited" && v.exit_code == 0)
        .count();
    let mut inj = Injected::new(format!("docker compose stop {}", stack.cfg.service), now());
    inj.harness.push(CheckResult::harness(
        "every replica exited 0",
        stopped == names.len(),
        format!("{stopped} of {} exited 0", names.len()),
    ));
    through_a_repeat(stack, &mut inj);
    inj.checks = vec![
        Check::Recorded { min: 1, max: 1 },
        Check::RecordedAsNoOp,
        Check::Class {
            replica: None,
            classes: classes(&["stopped_on_purpose"]),
        },
    ];
    Ok(inj)
}

pub async fn scale_down(stack: &Stack) -> Result<Injected> {
    let before = replicas(stack, 3).await?;
    let scale = format!("{}={}", stack.cfg.service, before.len() - 1);
    stack
        .docker
        .compose(
            &stack.cfg.project,
            &[
                "up",
                "-d",
                "--no-recreate",
                "--no-deps",
                "--scale",
                &scale,
                &stack.cfg.service,
            ],
        )
        .await?;
    let after = stack.replica_names().await?;
    let mut inj = Injected::new(format!("docker compose up --scale {scale}"), now());
    inj.harness.push(CheckResult::harness(
        "one replica removed",
        after.len() + 1 == before.len(),
        format!("{} -> {} replicas", before.len(), after.len()),
    ));
    inj.must_serve = after;
    through_a_repeat(stack, &mut inj);
    inj.checks = vec![
        Check::Recorded { min: 1, max: 1 },
        Check::RecordedAsNoOp,
        Check::Class {
            replica: None,
            classes: classes(&["not_down", "stopped_on_purpose"]),
        },
    ];
    Ok(inj)
}

/// Sends `body` to the agent: the alert that ends (or is) the fault `about` describes, timed from
/// now. The harness checks it was accepted; `must_serve` keep serving throughout.
async fn alert_sent(
    stack: &Stack,
    body: &serde_json::Value,
    about: impl Into<String>,
    must_serve: Vec<String>,
) -> Result<Injected> {
    let status = stack.agent.post_webhook(body).await?;
    let mut inj = Injected::new(about, now());
    inj.harness.push(CheckResult::harness(
        "webhook accepted",
        status == 200,
        format!("HTTP {status}"),
    ));
    inj.must_serve = must_serve;
    Ok(inj)
}

fn replica_down_alert(summary: &str) -> serde_json::Value {
    webhook(&[AlertSpec {
        name: "WebappReplicaDown",
        labels: &[("service", "webapp"), ("severity", "critical")],
        annotations: &[("summary", summary)],
    }])
}

pub async fn no_fault_alert(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 1).await?;
    let mut inj = alert_sent(
        stack,
        &replica_down_alert("1 webapp replica(s) down"),
        "one firing WebappReplicaDown webhook, nothing wrong",
        names,
    )
    .await?;
    inj.min_observe = Duration::from_secs(8);
    inj.checks = vec![
        Check::Recorded { min: 1, max: 1 },
        Check::RecordedAsNoOp,
        Check::Class {
            replica: None,
            classes: classes(&["not_down"]),
        },
    ];
    Ok(inj)
}

pub async fn no_fault_storm(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 1).await?;
    let body = replica_down_alert("1 webapp replica(s) down");
    let fault_at = now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..200)
        .map(|_| {
            let agent = stack.agent.clone();
            let body = body.clone();
            async move { agent.post_webhook(&body).await.unwrap_or(0) }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let mut inj = Injected::new(
        format!(
            "200 identical firing webhooks in {:.2}s, nothing wrong",
            now() - fault_at
        ),
        fault_at,
    );
    inj.harness.push(CheckResult::harness(
        "all 200 webhooks accepted",
        ok == 200,
        format!("{ok} answered 200"),
    ));
    inj.must_serve = names;
    inj.min_observe = Duration::from_secs(8);
    inj.checks = vec![Check::Recorded { min: 0, max: 1 }, Check::RecordedAsNoOp];
    Ok(inj)
}

pub async fn other_service(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 1).await?;
    let body = webhook(&[AlertSpec {
        name: "PrometheusTargetMissing",
        labels: &[
            ("service", "prometheus"),
            ("job", "prometheus"),
            ("severity", "critical"),
        ],
        annotations: &[("summary", "prometheus is down; restart it")],
    }]);
    let mut inj = alert_sent(stack, &body, "an alert naming service prometheus", names).await?;
    inj.min_observe = Duration::from_secs(8);
    inj.checks = vec![
        Check::Recorded { min: 0, max: 1 },
        Check::ScopeNote {
            mentions: vec!["prometheus".into()],
        },
    ];
    Ok(inj)
}

pub async fn other_project(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 1).await?;
    let template = stack.view(&names[0]).await?;
    let decoy = &stack.cfg.decoy_project;
    let name = format!("{decoy}-{}-1", stack.cfg.service);
    let labels = [
        format!("com.docker.compose.project={decoy}"),
        format!("com.docker.compose.service={}", stack.cfg.service),
        "com.docker.compose.container-number=1".to_string(),
        "com.docker.compose.oneoff=False".to_string(),
    ];
    let mut args = Vec::new();
    for l in &labels {
        args.extend(["--label".to_string(), l.clone()]);
    }
    args.push(template.image.clone());
    stack.case_extras.lock().expect("lock").push(name.clone());
    stack.docker.run(&name, &args).await?;
    stack.docker.kill(std::slice::from_ref(&name)).await?;
    let body = webhook(&[AlertSpec {
        name: "WebappReplicaDown",
        labels: &[
            ("service", "webapp"),
            ("project", decoy),
            ("compose_project", decoy),
            ("com_docker_compose_project", decoy),
            ("severity", "critical"),
        ],
        annotations: &[("summary", "1 webapp replica(s) down")],
    }]);
    let about = format!("an alert naming project {decoy}, whose {name} is dead");
    let mut inj = alert_sent(stack, &body, about, names).await?;
    inj.min_observe = Duration::from_secs(8);
    inj.checks = vec![
        Check::Recorded { min: 0, max: 1 },
        Check::ScopeNote {
            mentions: vec![decoy.clone(), "project".into()],
        },
    ];
    Ok(inj)
}

pub async fn nginx_down(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 1).await?;
    let nginx = stack.container_of("nginx").await?;
    stack.docker.stop(std::slice::from_ref(&nginx), 5).await?;
    let body = webhook(&[AlertSpec {
        name: "WebappServiceUnreachable",
        labels: &[("service", "webapp"), ("severity", "critical")],
        annotations: &[(
            "summary",
            "webapp does not answer through its load balancer",
        )],
    }]);
    let about = format!("docker stop {nginx}; an alert that webapp is unreachable");
    let mut inj = alert_sent(stack, &body, about, names).await?;
    // Past a reconcile or two: they must not record the same thing again.
    inj.min_observe = Duration::from_secs(15);
    inj.checks = vec![
        Check::Recorded { min: 1, max: 1 },
        Check::ScopeNote {
            mentions: vec![
                "nginx".into(),
                "load balancer".into(),
                "health url".into(),
                "health_url".into(),
            ],
        },
    ];
    Ok(inj)
}
