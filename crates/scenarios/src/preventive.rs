//! Preventive recycling under load (issue 16): the agent with `PREVENTIVE_RECYCLE=on` replaces
//! each replica before its leak reaches the memory limit, drained first, one at a time. A
//! case is a load leg of [`crate::load`] with the agent recreated for it (and back as shipped
//! afterwards):
//!
//! - `users20`: the README walkthrough's 20 users for `SCENARIOS_LOAD_SECS`, beside a leg
//!   healed by Docker's restart policy (the floor of issue 15);
//! - `leak2x`: 5 users, each request leaking twice as much (`LEAK_BYTES_PER_REQUEST` 2 MiB);
//! - `stubborn`: 5 users, replicas that ignore SIGTERM (`IGNORE_SIGTERM=true`): every recycle
//!   ends by the stop timeout's SIGKILL.
//!
//! The replicas' variables change only by recreating them: compose passes them through
//! (docker/scenarios.yaml), the harness recreates the service with them set and, after the
//! leg, with them unset. Scored from what users and Docker saw (Locust's count at nginx, OOM
//! kills and recycles from Docker's events); the agent's own word is scored where it is the
//! promise: when recycling cannot keep up, it says so once (`recycle_behind`) with the numbers.
//! Its recorded recycles are cross-checked with Docker's.

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::load::{run_leg, run_with_table, verdict_of, Healer, Leg};
use crate::runner::CaseResult;
use crate::scenarios::CaseDef;
use crate::score::CheckResult;
use crate::stack::{say, Stack};

/// The served share the walkthrough's load must reach (the "done when").
pub const SERVED_PCT: f64 = 99.0;
/// The leak cases' load: the end-to-end step's users and seconds (the figures it promises).
const SMALL_USERS: u32 = 5;
const SMALL_SECS: u64 = 100;
/// `leak2x`: twice the webapp's default leak of 1 MiB per request.
const LEAK_2X: &str = "2097152";

/// What differs between the cases.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub users: u32,
    pub secs: u64,
    /// Variables the replicas get for the case (compose passes them through).
    pub replica_env: Vec<(&'static str, &'static str)>,
    /// Also a leg healed by Docker's restart policy, side by side.
    pub floor: bool,
    pub promise: Promise,
}

/// What the agent promises in the case, besides a `recycle_behind` escalation when it cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promise {
    /// At least [`SERVED_PCT`] of requests served, and no worse than the restart policy.
    Served,
    /// No OOM kill and no failed request.
    Nothing,
    /// Replicas that will not drain: recycled anyway (the stop timeout's kill), no OOM kill.
    Stubborn,
}

pub fn variant(case: &str, load_secs: u64) -> Result<Variant> {
    let small = |replica_env, promise| Variant {
        users: SMALL_USERS,
        secs: load_secs.min(SMALL_SECS),
        replica_env,
        floor: false,
        promise,
    };
    Ok(match case {
        "users20" => Variant {
            users: 20,
            secs: load_secs,
            replica_env: vec![],
            floor: true,
            promise: Promise::Served,
        },
        "leak2x" => small(vec![("LEAK_BYTES_PER_REQUEST", LEAK_2X)], Promise::Nothing),
        "stubborn" => small(vec![("IGNORE_SIGTERM", "true")], Promise::Stubborn),
        other => bail!("no preventive case {other}"),
    })
}

pub async fn run(stack: &Stack, def: &CaseDef) -> CaseResult {
    run_with_table(
        stack,
        def,
        |started| run_case(stack, def, started),
        crate::report::preventive_text,
    )
    .await
}

/// The replicas recreated with `env` (`None`: unset), the agent stopped meanwhile so that it
/// takes no part in compose's own stops and starts.
async fn set_replica_env(stack: &Stack, env: &[(&str, Option<&str>)]) -> Result<()> {
    let agent = stack.container_of("webhook-receiver").await?;
    stack.docker.stop(std::slice::from_ref(&agent), 30).await?;
    let recreated = stack.recreate(&stack.cfg.service, env).await;
    stack.docker.start(std::slice::from_ref(&agent)).await?;
    stack.wait_agent(60.0).await?;
    recreated
}

async fn run_case(stack: &Stack, def: &CaseDef, started: f64) -> Result<CaseResult> {
    let v = variant(def.case, stack.cfg.load_secs)?;
    stack.baseline().await.context("baseline before the leg")?;
    let mut legs = Vec::new();
    let mut harness = Vec::new();
    let mut actions = Vec::new();
    let mut wrong = Vec::new();
    let mut incidents = Vec::new();
    let set: Vec<(&str, Option<&str>)> =
        v.replica_env.iter().map(|(k, x)| (*k, Some(*x))).collect();
    let unset: Vec<(&str, Option<&str>)> = v.replica_env.iter().map(|(k, _)| (*k, None)).collect();
    if !set.is_empty() {
        set_replica_env(stack, &set).await?;
        stack
            .baseline()
            .await
            .context("baseline with the case's replicas")?;
    }
    let out = run_leg(stack, Healer::Preventive, v.users, v.secs).await;
    if !unset.is_empty() {
        // As shipped again whatever happened: the next case needs it.
        set_replica_env(stack, &unset)
            .await
            .context("restoring the replicas as shipped")?;
    }
    let out = out?;
    harness.extend(out.harness);
    actions.extend(out.actions);
    wrong.extend(out.wrong);
    incidents.extend(out.incidents);
    legs.push(out.leg);
    if v.floor {
        stack
            .baseline()
            .await
            .context("baseline before the floor leg")?;
        let out = run_leg(stack, Healer::RestartPolicy, v.users, v.secs).await?;
        harness.extend(out.harness);
        legs.push(out.leg);
    }
    let prev = legs[0].clone();
    let floor = legs.get(1).cloned();
    let mut checks = harness;
    checks.extend(score(v.promise, &prev, floor.as_ref()));
    let missed: Vec<String> = checks
        .iter()
        .filter(|c| !c.harness && !c.ok)
        .map(|c| format!("{}: {}", c.what, c.detail))
        .collect();
    let crosscheck = crosscheck(&prev);
    for m in &crosscheck {
        say(format!(
            "!! CROSS-CHECK MISMATCH ({}/{}): {m}",
            def.scenario, def.case
        ));
    }
    say(format!(
        "{}: {:.0} requests, {:.0} failed ({} served), {} OOM kills, {} recycles ({} drained, {} SIGKILLed at the stop timeout, {} OOM-killed during it), {} recycle_behind escalation(s)",
        def.case,
        prev.requests,
        prev.failed,
        prev.served_pct.map(|p| format!("{p:.2} %")).unwrap_or("-".into()),
        prev.oom_kills,
        prev.recycles,
        prev.recycles_drained,
        prev.recycles_killed,
        prev.recycles_oom,
        prev.behind.len()
    ));
    let verdict = verdict_of(&checks, &wrong, &missed);
    let invalid = verdict == "invalid";
    let mut figures = serde_json::Map::new();
    figures.insert("users".into(), json!(v.users));
    figures.insert("load_secs".into(), json!(v.secs));
    figures.insert("spawn_rate".into(), json!(stack.cfg.load_spawn_rate));
    figures.insert(
        "replica_env".into(),
        json!(v
            .replica_env
            .iter()
            .map(|(k, x)| format!("{k}={x}"))
            .collect::<Vec<_>>()),
    );
    figures.insert("requests".into(), json!(prev.requests));
    figures.insert("failed".into(), json!(prev.failed));
    figures.insert("served_pct".into(), json!(prev.served_pct));
    figures.insert("oom_kills".into(), json!(prev.oom_kills));
    figures.insert("recycles".into(), json!(prev.recycles));
    figures.insert("recycles_drained".into(), json!(prev.recycles_drained));
    figures.insert("recycles_killed".into(), json!(prev.recycles_killed));
    figures.insert("recycles_oom".into(), json!(prev.recycles_oom));
    figures.insert("legs".into(), json!(legs));
    Ok(CaseResult {
        about: format!(
            "{} Locust users (spawn rate {}) through nginx for {}s, the agent with PREVENTIVE_RECYCLE=on{}{}",
            v.users,
            stack.cfg.load_spawn_rate,
            v.secs,
            if v.replica_env.is_empty() {
                String::new()
            } else {
                format!(
                    ", replicas with {}",
                    v.replica_env
                        .iter()
                        .map(|(k, x)| format!("{k}={x}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            },
            if v.floor {
                ", then Docker's restart policy (agent stopped)"
            } else {
                ""
            }
        ),
        verdict: verdict.into(),
        correct_action: wrong.is_empty() && missed.is_empty() && !invalid,
        records_ok: true,
        expected: expected(v.promise),
        actions,
        wrong,
        missed,
        checks,
        timed_out: prev.healthy_after_s.is_none(),
        incidents,
        crosscheck,
        figures,
        ..CaseResult::blank(stack, def, started)
    })
}

fn expected(p: Promise) -> Vec<String> {
    let behind = "or one recycle_behind escalation with the numbers (recycling cannot keep up)";
    match p {
        Promise::Served => vec![
            format!("serve at least {SERVED_PCT:.0} % of requests, {behind}"),
            "serve at least the restart policy's share".into(),
        ],
        Promise::Nothing => vec![format!("0 OOM kills and 0 failed requests, {behind}")],
        Promise::Stubborn => vec![
            "recycle replicas that ignore SIGTERM (the stop timeout ends them)".into(),
            format!("0 OOM kills, {behind}"),
            "report the failed requests (what a stubborn replica cost)".into(),
        ],
    }
}

/// A `recycle_behind` escalation's text gives the numbers: the time to the limit, the time the
/// recycles need, the leak rate.
fn has_numbers(detail: &str) -> bool {
    let numbers = detail
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|t| t.chars().any(|c| c.is_ascii_digit()))
        .count();
    detail.contains("MiB/s") && numbers >= 3
}

/// The case's agent checks, from the preventive leg (and the restart-policy leg, if any).
///
/// - The promise ([`Promise`]) holds, or recycling could not keep up and the agent said so:
///   one `recycle_behind` escalation with the numbers. The engine raises it only once a replica
///   died after a predicted miss, so an escalation without a death is a false alarm, and more
///   than one in a leg is noise (it escalates once per ten quiet minutes).
/// - Every recycle the agent recorded ended with the replica serving again.
/// - `users20`: at least the restart policy's share served (issue 15's floor; preventive
///   recycling falls back to reactive healing, so it may not do worse).
/// - `stubborn`: recycles happened (a replica that will not drain is still replaced: the stop
///   timeout bounds it). The failed requests are reported, not bounded: they are the figure
///   the case measures.
pub fn score(promise: Promise, leg: &Leg, floor: Option<&Leg>) -> Vec<CheckResult> {
    let pct = leg.served_pct.unwrap_or(0.0);
    // Deaths the recycles did not cause, and OOM kills (one may end a recycle of a replica
    // that keeps serving after SIGTERM): what bears a predicted miss out.
    let unplanned_deaths = leg.deaths.saturating_sub(leg.recycles) + leg.recycles_oom;
    let behind_said = leg.behind.len() == 1 && leg.behind.iter().all(|d| has_numbers(d));
    let behind_detail = match leg.behind.as_slice() {
        [] => "no recycle_behind escalation".to_string(),
        [one] => format!("recycle_behind: {one}"),
        more => format!("{} recycle_behind escalations", more.len()),
    };
    let mut checks = Vec::new();
    let (what, held, detail) = match promise {
        Promise::Served => (
            format!("served at least {SERVED_PCT:.0} % of requests, or escalated that recycling cannot keep up"),
            pct >= SERVED_PCT,
            format!(
                "{pct:.2} % served ({:.0} failed of {:.0}), {} OOM kills; {behind_detail}",
                leg.failed, leg.requests, leg.oom_kills
            ),
        ),
        Promise::Nothing => (
            "0 OOM kills and 0 failed requests, or escalated that recycling cannot keep up".to_string(),
            leg.oom_kills == 0 && leg.failed == 0.0,
            format!(
                "{} OOM kills, {:.0} failed of {:.0}; {behind_detail}",
                leg.oom_kills, leg.failed, leg.requests
            ),
        ),
        Promise::Stubborn => (
            "0 OOM kills, or escalated that recycling cannot keep up".to_string(),
            leg.oom_kills == 0,
            format!(
                "{} OOM kills ({:.0} failed of {:.0}: what replicas that ignore SIGTERM cost); {behind_detail}",
                leg.oom_kills, leg.failed, leg.requests
            ),
        ),
    };
    checks.push(CheckResult::agent(what, held || behind_said, detail));
    checks.push(CheckResult::agent(
        "recycle_behind only after a replica died, at most once",
        leg.behind.len() <= 1 && (leg.behind.is_empty() || unplanned_deaths > 0),
        format!(
            "{} escalation(s); {unplanned_deaths} deaths besides the recycles ({} OOM kills)",
            leg.behind.len(),
            leg.oom_kills
        ),
    ));
    checks.push(CheckResult::agent(
        "every recycle served again",
        leg.recycles_not_serving == 0,
        format!(
            "{} of {} recorded recycles not serving after the verify timeout",
            leg.recycles_not_serving,
            leg.recorded_recycle_exits.values().sum::<usize>()
        ),
    ));
    if promise == Promise::Served {
        if let Some(f) = floor {
            let fp = f.served_pct.unwrap_or(0.0);
            checks.push(CheckResult::agent(
                "served at least the restart policy's share of requests",
                pct >= fp,
                format!("preventive {pct:.2} %, restart policy {fp:.2} %"),
            ));
        }
    }
    if promise == Promise::Stubborn {
        checks.push(CheckResult::agent(
            "replicas that ignore SIGTERM were recycled (Docker saw the agent's stops)",
            leg.recycles > 0,
            format!("{} recycles", leg.recycles),
        ));
        // A replica that ignores SIGTERM keeps serving, and leaking, until the stop timeout's
        // SIGKILL, or until the OOM killer comes first: either way none drains.
        checks.push(CheckResult::harness(
            "the replicas ignored SIGTERM: no recycle drained (each ended by the stop timeout's SIGKILL or the OOM killer)",
            leg.recycles_drained == 0,
            format!(
                "of {} recycles: {} SIGKILLed at the stop timeout, {} OOM-killed during it, {} drained (Docker's events)",
                leg.recycles, leg.recycles_killed, leg.recycles_oom, leg.recycles_drained
            ),
        ));
    }
    checks
}

/// Where the agent's record of its recycles and Docker's disagree.
pub fn crosscheck(leg: &Leg) -> Vec<String> {
    let recorded: usize = leg.recorded_recycle_exits.values().sum();
    let mut out = Vec::new();
    if recorded != leg.recycles {
        out.push(format!(
            "the agent recorded {recorded} recycles, Docker saw {} stops by the agent",
            leg.recycles
        ));
    }
    let killed = leg.recorded_recycle_exits.get("137").copied().unwrap_or(0);
    if killed != leg.recycles_killed + leg.recycles_oom {
        out.push(format!(
            "the agent recorded {killed} recycles ended by a kill (exit 137), Docker saw {} SIGKILLs and {} OOM kills during a stop",
            leg.recycles_killed, leg.recycles_oom
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::round;
    use std::collections::BTreeMap;

    fn leg(requests: f64, failed: f64, oom: usize, recycles: usize) -> Leg {
        Leg {
            healer: Healer::Preventive,
            users: 5,
            load_s: 100.0,
            requests,
            served: requests - failed,
            served_pct: Some(round(100.0 * (requests - failed) / requests)),
            statuses: BTreeMap::new(),
            no_replica_s: 0.0,
            mean_answering: 3.0,
            timeline: String::new(),
            healthy_after_s: Some(0.5),
            recovery_waited_s: 0.5,
            healthy_at_end: 3,
            deaths: recycles + oom,
            oom_kills: oom,
            starts_by_agent: oom,
            starts_by_docker: 0,
            agent_restarts_metric: Some(oom as f64),
            docker_restart_count: 0,
            incidents: BTreeMap::new(),
            escalations: BTreeMap::new(),
            healthz_status: None,
            locust_requests: None,
            locust_failures: None,
            started_at: 0.0,
            load_end_at: 100.0,
            failed,
            recycles,
            recycles_killed: 0,
            recycles_oom: 0,
            recycles_drained: recycles,
            behind: vec![],
            recorded_recycle_exits: BTreeMap::from([("0".to_string(), recycles)]),
            recycles_not_serving: 0,
        }
    }

    const BEHIND: &str = "preventive recycling cannot keep up: hs-webapp-2 would reach its memory limit in 3.1 s, while recycling it (and those before it) takes 9.4 s at the slowest recycle measured (2.9 s); the replicas leak 48.0 MiB/s each; 3 replicas.";

    fn failed(checks: &[CheckResult]) -> Vec<String> {
        checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.what.clone())
            .collect()
    }

    #[test]
    fn the_variants_follow_the_case_names() {
        let v = variant("users20", 180).unwrap();
        assert_eq!((v.users, v.secs, v.floor), (20, 180, true));
        assert!(v.replica_env.is_empty());
        let v = variant("leak2x", 180).unwrap();
        assert_eq!((v.users, v.secs, v.floor), (5, 100, false));
        assert_eq!(v.replica_env, [("LEAK_BYTES_PER_REQUEST", "2097152")]);
        // A shorter SCENARIOS_LOAD_SECS shortens every case.
        assert_eq!(variant("stubborn", 60).unwrap().secs, 60);
        assert_eq!(
            variant("stubborn", 60).unwrap().replica_env,
            [("IGNORE_SIGTERM", "true")]
        );
        assert!(variant("users5", 180).is_err());
    }

    #[test]
    fn nothing_lost_holds_the_promise() {
        let l = leg(3800.0, 0.0, 0, 31);
        assert!(failed(&score(Promise::Nothing, &l, None)).is_empty());
        // One failed request, or one OOM kill, without a word: the promise is broken.
        let one_failed = leg(3800.0, 1.0, 0, 31);
        assert_eq!(
            failed(&score(Promise::Nothing, &one_failed, None)),
            ["0 OOM kills and 0 failed requests, or escalated that recycling cannot keep up"]
        );
        let one_oom = leg(3800.0, 0.0, 1, 31);
        assert_eq!(failed(&score(Promise::Nothing, &one_oom, None)).len(), 1);
    }

    #[test]
    fn an_escalation_with_the_numbers_after_a_death_is_the_other_way_to_keep_it() {
        let mut l = leg(25000.0, 600.0, 40, 20);
        assert_eq!(failed(&score(Promise::Served, &l, None)).len(), 1);
        l.behind = vec![BEHIND.into()];
        assert!(failed(&score(Promise::Served, &l, None)).is_empty());
        assert!(failed(&score(Promise::Nothing, &l, None)).is_empty());
        // Without the numbers it says nothing people can act on.
        l.behind = vec!["preventive recycling cannot keep up".into()];
        assert_eq!(failed(&score(Promise::Served, &l, None)).len(), 1);
        // Twice in one leg is noise; the promise is once.
        l.behind = vec![BEHIND.into(), BEHIND.into()];
        let f = failed(&score(Promise::Served, &l, None));
        assert_eq!(f.len(), 2, "{f:?}");
    }

    #[test]
    fn an_escalation_without_a_death_is_a_false_alarm() {
        let mut l = leg(3800.0, 0.0, 0, 16);
        l.behind = vec![BEHIND.into()];
        assert_eq!(
            failed(&score(Promise::Nothing, &l, None)),
            ["recycle_behind only after a replica died, at most once"]
        );
        // A replica killed by the kernel after the prediction bears it out.
        l.oom_kills = 1;
        l.deaths += 1;
        assert!(failed(&score(Promise::Nothing, &l, None)).is_empty());
    }

    #[test]
    fn the_walkthrough_load_serves_99_percent_and_no_less_than_the_floor() {
        let l = leg(25772.0, 11.0, 150, 21);
        let mut floor = leg(14470.0, 3850.0, 38, 0);
        floor.healer = Healer::RestartPolicy;
        assert!(failed(&score(Promise::Served, &l, Some(&floor))).is_empty());
        // Under the floor: worse than Docker alone, escalation or not.
        let mut worse = leg(14000.0, 4000.0, 60, 10);
        worse.behind = vec![BEHIND.into()];
        assert_eq!(
            failed(&score(Promise::Served, &worse, Some(&floor))),
            ["served at least the restart policy's share of requests"]
        );
    }

    #[test]
    fn stubborn_replicas_are_recycled_by_the_kill_and_the_cost_is_reported() {
        let mut l = leg(3794.0, 3.0, 0, 9);
        (l.recycles_drained, l.recycles_killed) = (0, 9);
        l.recorded_recycle_exits = BTreeMap::from([("137".to_string(), 9)]);
        let checks = score(Promise::Stubborn, &l, None);
        assert!(failed(&checks).is_empty());
        // The failed requests are the figure, not a bound.
        assert!(
            checks[0].detail.contains("3 failed of 3794"),
            "{}",
            checks[0].detail
        );
        assert!(crosscheck(&l).is_empty());
        // No recycle at all: the agent let them be.
        let none = leg(3794.0, 0.0, 0, 0);
        assert!(failed(&score(Promise::Stubborn, &none, None))
            .iter()
            .any(|w| w
                == "replicas that ignore SIGTERM were recycled (Docker saw the agent's stops)"));
        // The OOM killer first, during the stop timeout: still no drain, but an OOM kill.
        (l.recycles_killed, l.recycles_oom, l.oom_kills) = (8, 1, 1);
        assert_eq!(
            failed(&score(Promise::Stubborn, &l, None)),
            ["0 OOM kills, or escalated that recycling cannot keep up"]
        );
        assert!(crosscheck(&l).is_empty());
        // It bears a predicted miss out: escalated, it keeps the promise.
        l.behind = vec![BEHIND.into()];
        assert!(failed(&score(Promise::Stubborn, &l, None)).is_empty());
        // A recycle that drained: the replicas did not ignore SIGTERM (the case is invalid).
        (l.recycles_oom, l.recycles_drained) = (0, 1);
        let c = score(Promise::Stubborn, &l, None);
        assert!(c.iter().any(|c| c.harness && !c.ok));
        assert_eq!(crosscheck(&l).len(), 1);
    }

    #[test]
    fn recycles_that_did_not_serve_again_fail() {
        let mut l = leg(3800.0, 0.0, 0, 10);
        l.recycles_not_serving = 1;
        assert_eq!(
            failed(&score(Promise::Nothing, &l, None)),
            ["every recycle served again"]
        );
        // The agent's record and Docker's events disagree: printed, not scored.
        l.recycles = 9;
        assert_eq!(crosscheck(&l).len(), 1);
    }
}
