//! Replicas that run but do not serve: paused, frozen with SIGSTOP, failing their healthcheck.

use std::time::Duration;

use anyhow::Result;

use super::replicas;
use crate::docker::now;
use crate::runner::Injected;
use crate::score::{Check, CheckResult, Expect, Want};
use crate::stack::Stack;

fn class(replica: &str, classes: &[&str]) -> Check {
    Check::Class {
        replica: Some(replica.to_string()),
        classes: classes.iter().map(|c| c.to_string()).collect(),
    }
}

/// `docker pause` of replica `index`: Docker says paused (and soon unhealthy); nginx still
/// routes to it.
pub async fn paused(stack: &Stack, index: usize) -> Result<Injected> {
    let names = replicas(stack, index + 1).await?;
    let victim = names[index].clone();
    stack.docker.pause(&victim).await?;
    let mut inj = Injected::new(format!("docker pause {victim}"), now());
    inj.targets = vec![victim.clone()];
    inj.expect = vec![Expect::once(&victim, Want::UnpauseOrRestart)];
    inj.checks = vec![class(&victim, &["hung"])];
    inj.must_serve = names;
    inj.fix_expected = true;
    Ok(inj)
}

/// SIGSTOP: the process is frozen but Docker says running (and healthy until its healthcheck
/// has failed three times): only a probe of the replica itself, or the scrape alert, shows it.
pub async fn sigstop(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 1).await?;
    let victim = names[0].clone();
    stack.frozen.lock().expect("lock").push(victim.clone());
    stack.docker.signal(&victim, "SIGSTOP").await?;
    let fault_at = now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = stack.view(&victim).await?;
    let mut inj = Injected::new(format!("docker kill --signal SIGSTOP {victim}"), fault_at);
    inj.harness.push(CheckResult::harness(
        format!("{victim} frozen: Docker says running, /health does not answer"),
        v.status == "running" && !stack.serving(std::slice::from_ref(&victim)).await[&victim],
        format!("status {}, health {:?}", v.status, v.health),
    ));
    inj.targets = vec![victim.clone()];
    inj.expect = vec![Expect::once(&victim, Want::Restart)];
    inj.checks = vec![class(&victim, &["hung"])];
    inj.must_serve = names;
    inj.fix_expected = true;
    Ok(inj)
}

/// Replaces the second replica by a twin whose healthcheck fails once `/tmp/sick` exists;
/// `/tmp` is a tmpfs, so a restart clears it, as a restart clears a real wedged state.
pub async fn prepare_unhealthy(stack: &Stack) -> Result<()> {
    let names = replicas(stack, 2).await?;
    let name = names[1].clone();
    let extra: Vec<String> = [
        "--tmpfs",
        "/tmp",
        "--health-cmd",
        "test ! -e /tmp/sick && /app healthcheck",
        "--health-interval",
        "1s",
        "--health-timeout",
        "2s",
        "--health-retries",
        "3",
        "--health-start-period",
        "5s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    stack.twin(&name, &name, true, &extra, "exec /app").await
}

pub async fn unhealthy(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 2).await?;
    let victim = names[1].clone();
    stack.docker.exec(&victim, &["touch", "/tmp/sick"]).await?;
    let fault_at = now();
    // Docker needs three failed probes (about 3 s) to call it unhealthy.
    let mut seen = false;
    for _ in 0..60 {
        seen = stack
            .events
            .since(fault_at)
            .iter()
            .any(|e| e.name == victim && e.action == "health_status: unhealthy");
        if seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut inj = Injected::new(
        format!("{victim}'s healthcheck made to fail (its process keeps running)"),
        fault_at,
    );
    inj.harness.push(CheckResult::harness(
        format!("Docker reported {victim} unhealthy"),
        seen,
        if seen {
            "health_status: unhealthy event"
        } else {
            "no unhealthy event within 15s"
        },
    ));
    inj.targets = vec![victim.clone()];
    inj.expect = vec![Expect::once(&victim, Want::Restart)];
    inj.checks = vec![class(&victim, &["unhealthy"])];
    inj.must_serve = names;
    inj.fix_expected = true;
    Ok(inj)
}
