//! Replicas that die: OOM-killed, killed, crashing on every start, dying again and again.

use std::time::Duration;

use anyhow::{Context, Result};

use super::replicas;
use crate::docker::now;
use crate::runner::Injected;
use crate::score::{Check, CheckResult, Expect, Want};
use crate::stack::{say, Stack};

fn class(replica: &str, classes: &[&str]) -> Check {
    Check::Class {
        replica: Some(replica.to_string()),
        classes: classes.iter().map(|c| c.to_string()).collect(),
    }
}

/// Leaks memory in one replica (GET / straight at its IP, ~1 MiB each) until the kernel kills it.
pub async fn oom(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 1).await?;
    let victim = names[0].clone();
    let ip = stack.view(&victim).await?.ip.context("victim has no IP")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let from = now();
    let mut sent = 0;
    while sent < 2000 {
        match http.get(format!("http://{ip}:8000/")).send().await {
            Ok(r) if r.status().is_success() => sent += 1,
            _ => break,
        }
    }
    // The death (and Docker's oom event) arrives just after the last request.
    let mut died = None;
    let mut oom_event = false;
    for _ in 0..40 {
        let events = stack.events.since(from);
        oom_event = events.iter().any(|e| e.name == victim && e.action == "oom");
        died = events
            .iter()
            .find(|e| e.name == victim && e.action == "die")
            .map(|e| (e.time, e.exit_code));
        if died.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (fault_at, exit) = died.unwrap_or((now(), None));
    let mut inj = Injected::new(
        format!("{sent} GET / at {victim} ({ip}) until it died"),
        fault_at,
    );
    inj.harness.push(CheckResult::harness(
        format!("{victim} was OOM-killed (oom event, exit 137)"),
        oom_event && exit == Some(137),
        format!("oom event: {oom_event}, exit code {exit:?}, {sent} requests"),
    ));
    inj.targets = vec![victim.clone()];
    inj.expect = vec![Expect::once(&victim, Want::Start)];
    inj.must_serve = names;
    inj.fix_expected = true;
    inj.checks = vec![class(&victim, &["oom_killed"])];
    Ok(inj)
}

/// `docker kill` of one replica, or of all of them at once.
pub async fn killed(stack: &Stack, all: bool) -> Result<Injected> {
    let names = replicas(stack, 3).await?;
    let victims: Vec<String> = if all {
        names.clone()
    } else {
        vec![names[1].clone()]
    };
    stack.docker.kill(&victims).await?;
    let mut inj = Injected::new(format!("docker kill {}", victims.join(" ")), now());
    inj.targets = victims.clone();
    inj.expect = victims
        .iter()
        .map(|v| Expect::once(v, Want::Start))
        .collect();
    inj.checks = victims.iter().map(|v| class(v, &["killed"])).collect();
    inj.must_serve = names;
    inj.fix_expected = true;
    Ok(inj)
}

/// An extra replica (the service's image and compose labels) whose command fails at once:
/// `PORT=notaport`, exit 1 on every start.
pub async fn crash_on_start(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 1).await?;
    let template = stack.view(&names[0]).await?;
    let name = format!("{}-{}-9", stack.cfg.project, stack.cfg.service);
    let mut args = stack.replica_args(&template, &name);
    args.extend(["-e".into(), "PORT=notaport".into(), template.image.clone()]);
    stack.case_extras.lock().expect("lock").push(name.clone());
    stack.docker.run(&name, &args).await?;
    let fault_at = now();
    let mut first_exit = None;
    for _ in 0..20 {
        first_exit = stack
            .events
            .since(fault_at - 2.0)
            .iter()
            .find(|e| e.name == name && e.action == "die")
            .map(|e| e.exit_code);
        if first_exit.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let tries = stack.cfg.crash_on_start_tries;
    let mut inj = Injected::new(
        format!("extra replica {name} with PORT=notaport (exits 1 at once)"),
        fault_at,
    );
    inj.harness.push(CheckResult::harness(
        format!("{name} exited 1 at once"),
        first_exit == Some(Some(1)),
        format!("first exit: {first_exit:?}"),
    ));
    inj.targets = vec![name.clone()];
    inj.expect = vec![Expect::times(&name, Want::Start, 1, tries)];
    inj.must_serve = names;
    // Long enough for a restart loop to show: several reconciles and backoffs.
    inj.min_observe = Duration::from_secs(40);
    inj.timeout = Duration::from_secs(90);
    inj.checks = vec![
        class(&name, &["crashed_on_start"]),
        Check::Outcome {
            outcomes: vec!["gave_up".into()],
        },
        Check::Escalation {
            reasons: vec!["crash_on_start".into()],
            mentions: vec!["notaport".into(), "exit".into()],
        },
        Check::Notified {
            events: vec!["gave_up".into(), "escalated".into()],
        },
    ];
    Ok(inj)
}

/// One replica killed each time it is healed, `ESCALATE_AFTER` times.
pub async fn recurrence(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 2).await?;
    let victim = names[1].clone();
    let n = stack.cfg.escalate_after;
    let first = now();
    let mut ttf = Vec::new();
    let mut kills = 0;
    for k in 1..=n {
        // Let the replica run a moment first: a heal is recorded before the next death.
        tokio::time::sleep(Duration::from_secs(2)).await;
        if stack
            .docker
            .kill(std::slice::from_ref(&victim))
            .await
            .is_err()
        {
            say(format!("kill {k}: {victim} is not running (not healed?)"));
            break;
        }
        kills += 1;
        let killed_at = now();
        let deadline = killed_at + 45.0;
        let mut down_seen = false;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let up = stack.serving(std::slice::from_ref(&victim)).await[&victim];
            down_seen |= !up;
            if up && down_seen {
                ttf.push(now() - killed_at);
                say(format!(
                    "kill {k}/{n}: serving again after {:.1}s",
                    now() - killed_at
                ));
                break;
            }
            if now() > deadline {
                say(format!("kill {k}/{n}: not serving 45s after the kill"));
                break;
            }
        }
    }
    let mut inj = Injected::new(
        format!("docker kill {victim}, {kills} times, each after it was healed"),
        first,
    );
    inj.harness.push(CheckResult::harness(
        format!("{victim} killed {n} times"),
        kills == n,
        format!("{kills} kills"),
    ));
    inj.targets = vec![victim.clone()];
    inj.expect = vec![Expect::times(&victim, Want::Start, n, n)];
    inj.must_serve = names;
    inj.ttf = ttf;
    inj.checks = vec![
        Check::Escalation {
            reasons: vec!["recurrence".into()],
            mentions: vec![],
        },
        Check::Notified {
            events: vec!["escalated".into()],
        },
    ];
    Ok(inj)
}
