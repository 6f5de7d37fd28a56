//! The floor (issue 15): never worse than Docker's own restart policy. A replica that served
//! is never given up on, however often an outside hand kills it; what a restart cannot fix (a
//! start Docker refuses) is escalated once, and then the agent stays quiet.

use std::time::Duration;

use anyhow::{bail, Result};

use super::replicas;
use crate::docker::now;
use crate::runner::Injected;
use crate::score::{Check, CheckResult, Expect, Want};
use crate::stack::{say, Stack};

/// Kills in [`six_kills`], and the pace: one every `KILL_EVERY` (six in a minute, as the issue
/// measured), each only once the replica serves again.
const KILLS: usize = 6;
const KILL_EVERY: Duration = Duration::from_secs(10);
/// How long a killed replica may take to serve again before the harness stops killing it.
const SERVE_AGAIN_WITHIN: Duration = Duration::from_secs(40);

/// Waits until `name` serves (Docker healthy and `/health` answering at its address), at most
/// `within`; the seconds it took, or `None`.
async fn serves_within(stack: &Stack, name: &str, within: Duration) -> Option<f64> {
    let from = now();
    let names = [name.to_string()];
    while now() - from < within.as_secs_f64() {
        if stack.serving(&names).await[name] {
            return Some(now() - from);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// One replica SIGKILLed by pid six times in a minute, each time after it served again. A
/// service under more load than it can carry dies like this (OOM kills look the same to a
/// restart budget): the replica is restarted every time, and the recurrence is escalated once.
pub async fn six_kills(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 2).await?;
    let victim = names[1].clone();
    let first = now();
    let mut ttf = Vec::new();
    let mut how = Vec::new();
    let mut kills = 0;
    let mut last_kill = first;
    for k in 1..=KILLS {
        // The pace: kill k at (k-1) * KILL_EVERY after the first, or later if the replica took
        // longer to serve again.
        let due = first + (k - 1) as f64 * KILL_EVERY.as_secs_f64();
        if now() < due {
            tokio::time::sleep(Duration::from_secs_f64(due - now())).await;
        }
        match stack.docker.kill_by_pid(&victim).await {
            Ok(h) => how.push(h),
            Err(e) => {
                say(format!("kill {k}: {e:#}"));
                break;
            }
        }
        kills += 1;
        let killed_at = now();
        last_kill = killed_at;
        // Dead first (the die event), then serving again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        match serves_within(stack, &victim, SERVE_AGAIN_WITHIN).await {
            Some(_) => {
                let t = now() - killed_at;
                ttf.push(t);
                say(format!("kill {k}/{KILLS}: serving again after {t:.1}s"));
            }
            None => {
                say(format!(
                    "kill {k}/{KILLS}: {victim} not serving {}s after the kill: given up on?",
                    SERVE_AGAIN_WITHIN.as_secs()
                ));
                break;
            }
        }
    }
    let span = last_kill - first;
    let watched = now() - first;
    how.dedup();
    let mut inj = Injected::new(
        format!(
            "{victim} killed {kills} times in {span:.0}s ({}), each time after serving again",
            how.join("; ")
        ),
        first,
    );
    // The harness's part: every kill that could be made was made, paced as in the issue. A
    // replica not back after a kill ends the series early: that is the agent's miss, scored
    // below, not an invalid case.
    inj.harness.push(CheckResult::harness(
        format!("{victim} killed, each time after serving again"),
        kills >= 1,
        format!("{kills} kill(s) in {span:.0}s"),
    ));
    inj.targets = vec![victim.clone()];
    inj.expect = vec![Expect::times(&victim, Want::Start, KILLS, KILLS)];
    inj.must_serve = names;
    inj.ttf = ttf;
    // The runner's clock starts before the first kill: watch a few seconds past the last one.
    inj.min_observe = Duration::from_secs_f64(watched + 5.0);
    inj.timeout = Duration::from_secs_f64(watched + 45.0);
    inj.checks = vec![
        Check::NoOutcome {
            outcome: "gave_up".into(),
        },
        Check::Escalations {
            reasons: vec!["recurrence".into()],
            min: 1,
            max: 1,
        },
        Check::Notified {
            events: vec!["escalated".into()],
        },
    ];
    inj.figures.insert("kills".into(), kills.into());
    inj.figures.insert("kill_span_seconds".into(), span.into());
    Ok(inj)
}

/// A replica that served, then died, and whose bind-mount source was removed meanwhile: Docker
/// 20.10 answers every `POST /start` with 400 ("invalid mount config for type "bind": bind
/// source path does not exist") and emits no event. A restart cannot fix it. Watched over
/// several resyncs: one escalation and one notification, not one per resync.
pub async fn start_refused(stack: &Stack) -> Result<Injected> {
    let names = replicas(stack, 1).await?;
    let template = stack.view(&names[0]).await?;
    let name = format!("{}-{}-8", stack.cfg.project, stack.cfg.service);
    let source = stack.cfg.out_dir.join("start-refused-source");
    std::fs::create_dir_all(&source)?;
    let mut args = stack.replica_args(&template, &name);
    args.extend([
        "--mount".into(),
        format!(
            "type=bind,src={},dst=/start-refused-source,readonly",
            source.display()
        ),
        template.image.clone(),
    ]);
    stack.case_extras.lock().expect("lock").push(name.clone());
    stack.docker.run(&name, &args).await?;
    // It serves first: a replica that worked, whose next start cannot.
    let served = serves_within(stack, &name, Duration::from_secs(30)).await;
    if served.is_none() {
        bail!("{name} did not serve within 30 s of its start");
    }
    std::fs::remove_dir(&source)?;
    let how = stack.docker.kill_by_pid(&name).await?;
    let fault_at = now();
    // Resyncs to watch through: the agent's RECONCILE_INTERVAL is 10 s in the scenarios stack.
    // Three are enough to tell "once" from "once per resync", and keep the test command short.
    let resyncs = 3;
    let mut inj = Injected::new(
        format!(
            "{name} served, its bind source {} was removed, then it was killed ({how}); Docker refuses every start",
            source.display()
        ),
        fault_at,
    );
    // The death, as Docker reports it (a view taken at once may still say running).
    let mut died = None;
    for _ in 0..40 {
        died = stack
            .events
            .since(fault_at - 2.0)
            .into_iter()
            .find(|e| e.name == name && e.action == "die")
            .map(|e| e.exit_code);
        if died.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    inj.harness.push(CheckResult::harness(
        format!("{name} died and its bind source is gone"),
        died.is_some() && !source.exists(),
        format!(
            "exit code {:?}, source exists: {}",
            died.flatten(),
            source.exists()
        ),
    ));
    inj.targets = vec![name.clone()];
    // Docker emits nothing for a refused start: no action can be seen, and none may succeed.
    inj.expect = vec![];
    inj.must_serve = names;
    inj.min_observe = Duration::from_secs(resyncs * 10 + 5);
    inj.timeout = inj.min_observe + Duration::from_secs(45);
    inj.start_calls_of = Some(name.clone());
    inj.checks = vec![
        Check::Escalations {
            reasons: vec![],
            min: 1,
            max: 1,
        },
        Check::Notifications { min: 1, max: 1 },
        // A run that tries and fails, then one that gives up and escalates: at most two
        // records, however many resyncs pass.
        Check::Recorded { min: 1, max: 2 },
    ];
    inj.figures.insert("resyncs_watched".into(), resyncs.into());
    Ok(inj)
}
