//! Issue 8's fault runs: the agent killed or stopped while a replica dies, its monitoring
//! gone, a flood of bad webhooks during a heal. Each must end with every replica serving,
//! exactly one start per dead replica, nothing outside the service touched, the agent alive
//! and its memory bounded.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use futures_util::StreamExt;
use serde_json::json;

use super::replicas;
use crate::docker::now;
use crate::runner::{mib, Injected};
use crate::score::{CheckResult, Expect, Want};
use crate::stack::{say, Stack};

pub fn with_agent_checks(mut inj: Injected) -> Injected {
    inj.agent_checks = true;
    inj
}

fn one_start(inj: &mut Injected, victim: &str, names: Vec<String>) {
    inj.targets = vec![victim.to_string()];
    inj.expect = vec![Expect::once(victim, Want::Start)];
    inj.must_serve = names;
    inj.fix_expected = true;
    inj.agent_checks = true;
    // An agent without a start-up reconcile waits for an Alertmanager repeat.
    inj.timeout = Duration::from_secs(120);
}

pub async fn agent_sigkill(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 1).await?;
    let victim = names[0].clone();
    let agent = stack.container_of("webhook-receiver").await?;
    stack.docker.kill(std::slice::from_ref(&agent)).await?;
    stack.docker.kill(std::slice::from_ref(&victim)).await?;
    let fault_at = now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.docker.start(std::slice::from_ref(&agent)).await?;
    let mut inj = Injected::new(
        format!("docker kill {agent}; docker kill {victim}; 2 s later docker start {agent}"),
        fault_at,
    );
    one_start(&mut inj, &victim, names);
    Ok(inj)
}

pub async fn agent_stopped(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 2).await?;
    let victim = names[1].clone();
    let agent = stack.container_of("webhook-receiver").await?;
    let t = now();
    stack.docker.stop(std::slice::from_ref(&agent), 30).await?;
    let stop_s = now() - t;
    stack.docker.kill(std::slice::from_ref(&victim)).await?;
    let fault_at = now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stack.docker.start(std::slice::from_ref(&agent)).await?;
    let mut inj = Injected::new(
        format!("docker stop {agent} ({stop_s:.1}s); docker kill {victim}; 5 s later docker start {agent}"),
        fault_at,
    );
    inj.figures
        .insert("agent_stop_seconds".into(), json!(stop_s));
    one_start(&mut inj, &victim, names);
    Ok(inj)
}

pub async fn monitoring_down(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 3).await?;
    let victim = names[2].clone();
    let monitoring = vec![
        stack.container_of("prometheus").await?,
        stack.container_of("alertmanager").await?,
    ];
    stack.docker.stop(&monitoring, 10).await?;
    stack.docker.kill(std::slice::from_ref(&victim)).await?;
    let mut inj = Injected::new(
        format!("docker stop {}; docker kill {victim}", monitoring.join(" ")),
        now(),
    );
    one_start(&mut inj, &victim, names);
    Ok(inj)
}

/// A bad webhook of the flood: (kind, content type, token, body).
fn bad_webhook(i: usize, token: &str) -> (&'static str, &'static str, Option<String>, Vec<u8>) {
    let valid = br#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"WebappReplicaDown","service":"webapp"}}]}"#.to_vec();
    match i % 60 {
        // 24/60: no token at all.
        0..=23 => ("no_token", "application/json", None, valid),
        // 12/60: a wrong token.
        24..=35 => (
            "wrong_token",
            "application/json",
            Some("not-the-token".into()),
            valid,
        ),
        // 12/60: malformed JSON.
        36..=47 => (
            "malformed_json",
            "application/json",
            Some(token.into()),
            br#"{"version": "4", "alerts": [{"labels": "#.to_vec(),
        ),
        // 6/60: JSON, but not a webhook.
        48..=53 => (
            "not_a_webhook",
            "application/json",
            Some(token.into()),
            br#"[{"hello": "world"}]"#.to_vec(),
        ),
        // 5/60: not JSON at all.
        54..=58 => (
            "wrong_content_type",
            "text/plain",
            Some(token.into()),
            b"webapp is down".to_vec(),
        ),
        // 1/60: larger than WEBHOOK_MAX_BYTES (1 MiB by default).
        _ => (
            "oversized",
            "application/json",
            Some(token.into()),
            vec![b' '; 1_536 * 1024],
        ),
    }
}

pub async fn webhook_flood(stack: &Stack) -> Result<Injected> {
    const FLOOD: usize = 3000;
    let names = replicas(stack, 2).await?;
    let victim = names[1].clone();
    let rss_before = stack.agent.rss_bytes().await;
    stack.docker.kill(std::slice::from_ref(&victim)).await?;
    let fault_at = now();
    let http = stack.agent.http().clone();
    // Oversized bodies on connections of their own: the agent answers 413 without reading the
    // body and closes the connection, which would fail the next request pooled on it.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("{}/webhook", stack.agent.url);
    let token = stack.agent.token.clone();
    let results: Vec<(&'static str, Option<u16>)> = futures_util::stream::iter(0..FLOOD)
        .map(|i| {
            let (kind, content_type, auth, body) = bad_webhook(i, &token);
            let client = if kind == "oversized" { &fresh } else { &http };
            let mut req = client
                .post(&url)
                .header("content-type", content_type)
                .body(body);
            if let Some(t) = auth {
                req = req.bearer_auth(t);
            }
            async move { (kind, req.send().await.ok().map(|r| r.status().as_u16())) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let flood_s = now() - fault_at;
    let rss_after_flood = stack.agent.rss_bytes().await;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (kind, status) in &results {
        let s = status
            .map(|s| s.to_string())
            .unwrap_or("transport error".into());
        *by_status.entry(s.clone()).or_default() += 1;
        *by_kind
            .entry(kind.to_string())
            .or_default()
            .entry(s)
            .or_default() += 1;
    }
    let refused = results
        .iter()
        .filter(|(_, s)| s.is_some_and(|s| (400..500).contains(&s)))
        .count();
    say(format!(
        "flood: {FLOOD} bad webhooks in {flood_s:.1}s: {by_status:?}; agent RSS {} before, {} right after",
        mib(rss_before),
        mib(rss_after_flood)
    ));
    let mut inj = Injected::new(
        format!("docker kill {victim} and {FLOOD} malformed/unauthenticated webhooks at once ({flood_s:.1}s)"),
        fault_at,
    );
    inj.harness.push(CheckResult::harness(
        format!("{FLOOD} webhooks sent"),
        results.len() == FLOOD,
        format!("{} sent", results.len()),
    ));
    inj.harness.push(CheckResult::agent(
        "every bad webhook refused with a 4xx",
        refused == FLOOD,
        format!("{by_kind:?}"),
    ));
    inj.figures.insert("flood_seconds".into(), json!(flood_s));
    inj.figures.insert("flood_statuses".into(), json!(by_kind));
    inj.figures
        .insert("rss_before_flood_bytes".into(), json!(rss_before));
    inj.figures
        .insert("rss_after_flood_bytes".into(), json!(rss_after_flood));
    one_start(&mut inj, &victim, names);
    Ok(inj)
}
