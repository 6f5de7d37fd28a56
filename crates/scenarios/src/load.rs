//! The sustained load (issue 15): the README walkthrough's swarm (Locust in the stack, through
//! nginx) for a few minutes, twice on the same stack, one leg after the other: once healed by
//! the agent, once by Docker's own restart policy (the agent stopped, `--restart always` on
//! every replica). The agent's promise is the floor: it serves at least the share of requests
//! the restart policy serves, and leaves every replica healthy within 10 s of the load's end.
//!
//! Each leg starts from the same fresh baseline, so the order favours neither: the replicas
//! restarted (no leaked memory left, Docker's restart backoff reset), every replica serving
//! and scraped, no webapp alert firing, the swarm stopped. Scored per leg from what users and
//! Docker saw: the share of requests answered 2xx (Locust's own count), the seconds with no
//! replica answering (sampled every second at each replica's address), the time from the
//! load's end until every replica is healthy again, deaths and OOM kills (Docker's events),
//! and who started the replicas again.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::docker::now;
use crate::events::{agent_actions, ActionKind};
use crate::runner::{print_case, round, ActionSeen, CaseResult};
use crate::scenarios::CaseDef;
use crate::score::CheckResult;
use crate::stack::{say, Stack};

/// All replicas must be healthy this soon after the load (the agent's promise).
pub const RECOVERY_PROMISE_S: f64 = 10.0;
/// How long the harness waits after the load for every replica to be healthy.
const RECOVERY_WAIT_S: f64 = 120.0;
/// How long it waits for the agent to record the recycles Docker saw.
const RECORD_WAIT_S: f64 = 20.0;

/// Who heals the replicas in a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Healer {
    /// The agent runs; the replicas have `restart: "no"` (as shipped).
    Agent,
    /// The agent is stopped; every replica has `--restart always`.
    RestartPolicy,
    /// The agent runs with `PREVENTIVE_RECYCLE=on` (recreated with it for the leg, and
    /// without it afterwards): replicas are recycled before their memory reaches the limit.
    Preventive,
}

impl Healer {
    pub fn label(self) -> &'static str {
        match self {
            Healer::Agent => "the agent",
            Healer::RestartPolicy => "Docker restart: always (agent stopped)",
            Healer::Preventive => "the agent, PREVENTIVE_RECYCLE=on",
        }
    }

    /// The agent runs during the leg (and its actions are read from Docker's events).
    pub fn agent_on(self) -> bool {
        self != Healer::RestartPolicy
    }
}

/// One leg's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leg {
    pub healer: Healer,
    pub users: u32,
    /// From the swarm's start until Locust said it stopped.
    pub load_s: f64,
    pub requests: f64,
    /// Requests answered 2xx.
    pub served: f64,
    pub served_pct: Option<f64>,
    /// Requests by status (`502`, `504`, `none`: no answer).
    pub statuses: BTreeMap<String, f64>,
    /// Seconds of the load during which no replica answered at its own address.
    pub no_replica_s: f64,
    /// Mean replicas answering over the load.
    pub mean_answering: f64,
    /// Replicas answering, one digit per sample (about one a second).
    pub timeline: String,
    /// From the load's end until every replica was healthy (Docker) and answering; `None` when
    /// not within `recovery_waited_s`.
    pub healthy_after_s: Option<f64>,
    pub recovery_waited_s: f64,
    /// Replicas healthy at the end of the wait.
    pub healthy_at_end: usize,
    pub deaths: usize,
    pub oom_kills: usize,
    /// Starts of replicas after a death, by the agent and by Docker's restart policy.
    pub starts_by_agent: usize,
    pub starts_by_docker: usize,
    /// The agent's own count (healing_restarts_total{result="ok"}), agent leg only.
    pub agent_restarts_metric: Option<f64>,
    /// Docker's RestartCount grew by this much over the leg (restart-policy starts).
    pub docker_restart_count: i64,
    /// The agent's incidents of the leg, by outcome, and their escalations by reason.
    pub incidents: BTreeMap<String, usize>,
    pub escalations: BTreeMap<String, usize>,
    /// What the agent's `/healthz` said once the wait after the load was over.
    pub healthz_status: Option<String>,
    /// Locust's own statistics of the swarm (requests, failures).
    pub locust_requests: Option<f64>,
    pub locust_failures: Option<f64>,
    pub started_at: f64,
    pub load_end_at: f64,
    /// Requests not answered 2xx (Locust's count at nginx).
    #[serde(default)]
    pub failed: f64,
    /// Recycles as Docker saw them: the agent's graceful stops of replicas (then started
    /// again), and how many of those the stop timeout's SIGKILL ended.
    #[serde(default)]
    pub recycles: usize,
    #[serde(default)]
    pub recycles_killed: usize,
    /// Of those, ended by the OOM killer before the stop timeout (a replica that keeps
    /// serving after SIGTERM keeps leaking), and drained (exit 0).
    #[serde(default)]
    pub recycles_oom: usize,
    #[serde(default)]
    pub recycles_drained: usize,
    /// The `recycle_behind` escalations' texts (the numbers: leak, time to the limit, time
    /// needed).
    #[serde(default)]
    pub behind: Vec<String>,
    /// The recycles the agent recorded (incidents with a `recycle` record), by exit code
    /// (`0` drained, `137` killed at the stop timeout, `none`: it did not stop).
    #[serde(default)]
    pub recorded_recycle_exits: BTreeMap<String, usize>,
    /// Recycles the agent recorded whose replica did not serve again in time.
    #[serde(default)]
    pub recycles_not_serving: usize,
}

pub async fn run(stack: &Stack, def: &CaseDef) -> CaseResult {
    run_with_table(
        stack,
        def,
        |started| run_legs(stack, def, started),
        crate::report::load_text,
    )
    .await
}

/// A load case: announced, run by `body` (given its start time), printed with its `table`; an
/// error is the case's result.
pub(crate) async fn run_with_table<F, Fut>(
    stack: &Stack,
    def: &CaseDef,
    body: F,
    table: fn(&[CaseResult]) -> String,
) -> CaseResult
where
    F: FnOnce(f64) -> Fut,
    Fut: std::future::Future<Output = Result<CaseResult>>,
{
    let started = now();
    say(format!(
        "==== {} {}/{}: {}",
        stack.cfg.mode, def.scenario, def.case, def.about
    ));
    match body(started).await {
        Ok(r) => {
            print_case(&r);
            say(table(std::slice::from_ref(&r)));
            r
        }
        Err(e) => CaseResult::error(stack, def, started, format!("{e:#}")),
    }
}

fn users_of(def: &CaseDef) -> Result<u32> {
    def.case
        .strip_prefix("users")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("case {} names no user count (usersN)", def.case))
}

async fn run_legs(stack: &Stack, def: &CaseDef, started: f64) -> Result<CaseResult> {
    let users = users_of(def)?;
    let order = if stack.cfg.load_first == "policy" {
        [Healer::RestartPolicy, Healer::Agent]
    } else {
        [Healer::Agent, Healer::RestartPolicy]
    };
    let mut legs = Vec::new();
    let mut harness = Vec::new();
    let mut actions = Vec::new();
    let mut wrong = Vec::new();
    let mut incidents = Vec::new();
    for healer in order {
        stack.baseline().await.context("baseline before the leg")?;
        let out = run_leg(stack, healer, users, stack.cfg.load_secs).await?;
        harness.extend(out.harness);
        actions.extend(out.actions);
        wrong.extend(out.wrong);
        incidents.extend(out.incidents);
        legs.push(out.leg);
    }
    let agent = legs
        .iter()
        .find(|l| l.healer == Healer::Agent)
        .cloned()
        .context("no agent leg")?;
    let policy = legs
        .iter()
        .find(|l| l.healer == Healer::RestartPolicy)
        .cloned()
        .context("no restart-policy leg")?;
    let pct = |l: &Leg| l.served_pct.unwrap_or(0.0);
    let serves_enough = pct(&agent) >= pct(&policy);
    let recovers = agent
        .healthy_after_s
        .is_some_and(|t| t <= RECOVERY_PROMISE_S);
    let mut missed = Vec::new();
    if !serves_enough {
        missed.push(format!(
            "the agent served {:.1} % of requests, Docker's restart policy {:.1} %",
            pct(&agent),
            pct(&policy)
        ));
    }
    if !recovers {
        missed.push(match agent.healthy_after_s {
            Some(t) => format!("every replica healthy {t:.1}s after the load's end (promise: {RECOVERY_PROMISE_S:.0}s)"),
            None => format!(
                "{}/3 replicas healthy {:.0}s after the load's end",
                agent.healthy_at_end, agent.recovery_waited_s
            ),
        });
    }
    let checks: Vec<CheckResult> = harness
        .into_iter()
        .chain([
            CheckResult::agent(
                "served at least the restart policy's share of requests",
                serves_enough,
                format!(
                    "agent {:.1} %, restart policy {:.1} %",
                    pct(&agent),
                    pct(&policy)
                ),
            ),
            CheckResult::agent(
                format!("every replica healthy within {RECOVERY_PROMISE_S:.0}s of the load's end"),
                recovers,
                match agent.healthy_after_s {
                    Some(t) => format!("after {t:.1}s"),
                    None => format!(
                        "{}/3 after {:.0}s",
                        agent.healthy_at_end, agent.recovery_waited_s
                    ),
                },
            ),
        ])
        .collect();
    let invalid = checks.iter().any(|c| c.harness && !c.ok);
    let verdict = verdict_of(&checks, &wrong, &missed);
    let mut figures = serde_json::Map::new();
    figures.insert("users".into(), json!(users));
    figures.insert("load_secs".into(), json!(stack.cfg.load_secs));
    figures.insert("spawn_rate".into(), json!(stack.cfg.load_spawn_rate));
    figures.insert("order".into(), json!(order));
    figures.insert("legs".into(), json!(legs));
    Ok(CaseResult {
        about: format!(
            "{users} Locust users (spawn rate {}) through nginx for {}s, the agent and Docker's restart policy one after the other ({})",
            stack.cfg.load_spawn_rate,
            stack.cfg.load_secs,
            order.map(|h| h.label()).join(", then ")
        ),
        verdict: verdict.into(),
        correct_action: wrong.is_empty() && missed.is_empty() && !invalid,
        records_ok: true,
        expected: vec![
            "serve at least the restart policy's share of requests".into(),
            format!("every replica healthy within {RECOVERY_PROMISE_S:.0}s of the load's end"),
        ],
        actions,
        wrong,
        missed,
        checks,
        timed_out: agent.healthy_after_s.is_none(),
        incidents,
        figures,
        ..CaseResult::blank(stack, def, started)
    })
}

/// One leg with its healer set up first and the stack put back as shipped afterwards, whatever
/// happened (the next leg or case needs it): for the restart policy the agent stopped and
/// `--restart always` on every replica; for preventive recycling the agent recreated with
/// `PREVENTIVE_RECYCLE=on`. The caller has reached the baseline.
pub async fn run_leg(stack: &Stack, healer: Healer, users: u32, secs: u64) -> Result<LegOutcome> {
    match healer {
        Healer::Agent => leg(stack, healer, users, secs).await,
        Healer::RestartPolicy => {
            let names = stack.replica_names().await?;
            let agent = stack.container_of("webhook-receiver").await?;
            stack.docker.stop(std::slice::from_ref(&agent), 30).await?;
            stack.docker.set_restart_policy(&names, "always").await?;
            let out = leg(stack, healer, users, secs).await;
            let restored = async {
                stack.docker.set_restart_policy(&names, "no").await?;
                stack.docker.start(std::slice::from_ref(&agent)).await?;
                stack.wait_agent(60.0).await
            }
            .await;
            restored.context("restoring the stack after the restart-policy leg")?;
            out
        }
        Healer::Preventive => {
            stack
                .recreate("webhook-receiver", &[(PREVENTIVE_ENV, Some("on"))])
                .await
                .context("the agent with PREVENTIVE_RECYCLE=on")?;
            stack.wait_agent(60.0).await?;
            let out = leg(stack, healer, users, secs).await;
            let restored = async {
                stack
                    .recreate("webhook-receiver", &[(PREVENTIVE_ENV, None)])
                    .await?;
                stack.wait_agent(60.0).await
            }
            .await;
            restored.context("restoring the agent as shipped (no preventive recycling)")?;
            out
        }
    }
}

/// The agent's switch for preventive recycling (compose passes it through).
pub const PREVENTIVE_ENV: &str = "PREVENTIVE_RECYCLE";

/// A load case's verdict: `invalid` when a harness check failed (the load did not do what the
/// case needs), else by wrong actions and missed promises.
pub(crate) fn verdict_of(
    checks: &[CheckResult],
    wrong: &[String],
    missed: &[String],
) -> &'static str {
    if checks.iter().any(|c| c.harness && !c.ok) {
        return "invalid";
    }
    match (wrong.is_empty(), missed.is_empty()) {
        (true, true) => "correct",
        (false, true) => "wrong",
        (true, false) => "missed",
        (false, false) => "wrong+missed",
    }
}

pub struct LegOutcome {
    pub leg: Leg,
    pub harness: Vec<CheckResult>,
    pub actions: Vec<ActionSeen>,
    pub wrong: Vec<String>,
    pub incidents: Vec<Value>,
}

/// One leg, from its fresh start to every replica healthy (or the wait's end). The caller has
/// set the healer up (the agent stopped and the restart policy set, for the policy leg).
async fn leg(stack: &Stack, healer: Healer, users: u32, secs: u64) -> Result<LegOutcome> {
    let cfg = &stack.cfg;
    let names = stack.replica_names().await?;
    say(format!(
        "---- leg: {} ({users} users, {}s)",
        healer.label(),
        secs
    ));
    // Fresh: new processes (no leaked memory), Docker's restart backoff reset.
    stack.docker.restart(&names, 5).await?;
    let agent_on = healer.agent_on();
    stack.wait_quiet(agent_on, 150.0).await?;
    if agent_on {
        for n in &names {
            let _ = stack.agent.reset(n).await;
        }
    }
    if !matches!(stack.locust.state().await?.as_str(), "ready" | "stopped") {
        stack.locust.stop().await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let restart_counts_before = restart_counts(stack, &names).await;
    let ids_before: Vec<String> = stack
        .agent
        .incidents()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect();
    let metrics_before = stack.agent.metrics().await.unwrap_or_default();
    let counts_before = stack.locust.counts().await?;

    let t0 = now();
    stack.locust.swarm(users, cfg.load_spawn_rate, secs).await?;
    let mut timeline = String::new();
    let (mut no_replica_s, mut answering_s, mut sampled_s) = (0.0, 0.0, 0.0);
    let mut last = t0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut k = 0u64;
    let load_end = loop {
        tick.tick().await;
        let n = stack
            .answering(&names)
            .await
            .values()
            .filter(|a| **a)
            .count();
        let t = now();
        // Each sample stands for the time since the previous one (a slow sample skips ticks).
        let dt = t - last;
        last = t;
        sampled_s += dt;
        answering_s += dt * n as f64;
        if n == 0 {
            no_replica_s += dt;
        }
        timeline.push(char::from_digit(n.min(9) as u32, 10).unwrap_or('?'));
        k += 1;
        let elapsed = t - t0;
        if elapsed + 3.0 >= secs as f64 && k % 2 == 0 {
            match stack.locust.state().await.as_deref() {
                Ok("stopped") | Ok("ready") => break t,
                _ => {}
            }
        }
        if elapsed > secs as f64 + 60.0 {
            let _ = stack.locust.stop().await;
            bail!(
                "the Locust swarm still ran {elapsed:.0}s after its start ({}s asked)",
                secs
            );
        }
    };
    let counts = stack.locust.counts().await?.since(&counts_before);
    let stats = stack.locust.stats().await.unwrap_or_default();
    say(format!(
        "load over after {:.0}s: {:.0} requests, {:.1} % answered 2xx; {:.0}s with no replica answering",
        load_end - t0,
        counts.total(),
        100.0 * counts.served() / counts.total().max(1.0),
        no_replica_s
    ));

    // After the load: until every replica is healthy (Docker) and answering.
    let mut healthy_after = None;
    let mut healthy_at_end = 0;
    while now() - load_end < RECOVERY_WAIT_S {
        let s = stack.serving(&names).await;
        healthy_at_end = s.values().filter(|v| **v).count();
        if healthy_at_end == names.len() {
            healthy_after = Some(now() - load_end);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut end = now();
    if healer == Healer::Preventive {
        // A recycle that began as the load ended ends within the stop timeout: its kill, stop
        // and start belong to the leg (cut off, its kill would read as a kill by the agent).
        tokio::time::sleep(Duration::from_secs_f64(RECYCLE_STOP_SPAN_S)).await;
        end = now();
    }
    match healthy_after {
        Some(t) => say(format!("every replica healthy {t:.1}s after the load")),
        None => say(format!(
            "{healthy_at_end}/{} replicas healthy {RECOVERY_WAIT_S:.0}s after the load",
            names.len()
        )),
    }

    // What Docker saw.
    let events = stack.events.since(t0);
    let in_leg = |e: &&crate::events::Event| names.contains(&e.name) && e.time <= end;
    let (deaths, oom_kills) = deaths_and_oom_kills(events.iter().filter(in_leg));
    let all_actions: Vec<_> = agent_actions(&events, &stack.docker.ops(), &cfg.service)
        .into_iter()
        .filter(|a| a.time >= t0 && a.time <= end)
        .collect();
    // A recycle is the agent's graceful stop of a replica (its SIGTERM and, at the stop
    // timeout, SIGKILL, then the stop); due only with preventive recycling on.
    let recycles = if healer == Healer::Preventive {
        recycles_seen(&events, &all_actions, &names)
    } else {
        Recycles::default()
    };
    let wrong: Vec<String> = if agent_on {
        all_actions
            .iter()
            .enumerate()
            .filter(|(i, a)| {
                !recycles.actions.contains(i)
                    && (!names.contains(&a.container)
                        || !matches!(
                            a.kind,
                            ActionKind::Start | ActionKind::Restart | ActionKind::Unpause
                        ))
            })
            .map(|(_, a)| a)
            .map(|a| {
                format!(
                    "{} of {} ({}) during the load",
                    a.kind.label(),
                    a.container,
                    a.service
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    // Starts after a death (a recycle's own start is not a repair).
    let starts = all_actions
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !recycles.actions.contains(i)
                && names.contains(&a.container)
                && matches!(a.kind, ActionKind::Start | ActionKind::Restart)
        })
        .count();
    let restart_counts_after = restart_counts(stack, &names).await;
    let docker_restart_count = restart_counts_after - restart_counts_before;

    // What the agent recorded (agent leg), and what /healthz says now.
    let mut incidents = Vec::new();
    let mut by_outcome = BTreeMap::new();
    let mut escalations = BTreeMap::new();
    let mut agent_restarts_metric = None;
    let mut healthz_status = None;
    let mut behind = Vec::new();
    let mut recorded_recycle_exits = BTreeMap::new();
    let mut recycles_not_serving = 0;
    if agent_on {
        // A recycle is recorded once its replica serves again: one that ended with the load
        // may not be yet (a few seconds; the stop timeout for a replica that will not drain).
        let deadline = now() + RECORD_WAIT_S;
        loop {
            incidents = stack
                .agent
                .incidents()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|i| {
                    !i["id"]
                        .as_str()
                        .is_some_and(|id| ids_before.iter().any(|b| b == id))
                })
                .collect();
            let recorded = incidents
                .iter()
                .filter(|i| i["recycle"].is_object())
                .count();
            if recorded >= recycles.count || now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for i in &incidents {
            *by_outcome
                .entry(i["outcome"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
            if let Some(r) = i["escalation"]["reason"].as_str() {
                *escalations.entry(r.to_string()).or_insert(0) += 1;
                if r == "recycle_behind" {
                    behind.push(
                        i["escalation"]["detail"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
            if i["recycle"].is_object() {
                let exit = match i["recycle"]["exit_code"].as_i64() {
                    Some(c) => c.to_string(),
                    None => "none".into(),
                };
                *recorded_recycle_exits.entry(exit).or_insert(0) += 1;
                if i["recycle"]["healthy_after_seconds"].is_null() {
                    recycles_not_serving += 1;
                }
            }
        }
        let after = stack.agent.metrics().await.unwrap_or_default();
        agent_restarts_metric = counter_delta(&metrics_before, &after);
        healthz_status = stack
            .agent
            .healthz()
            .await
            .ok()
            .and_then(|h| h["status"].as_str().map(str::to_string));
    }
    let agent_running = stack
        .view(&stack.container_of("webhook-receiver").await?)
        .await?
        .status
        == "running";

    let leg = Leg {
        healer,
        users,
        load_s: round(load_end - t0),
        requests: counts.total(),
        served: counts.served(),
        served_pct: (counts.total() > 0.0).then(|| round(100.0 * counts.served() / counts.total())),
        statuses: counts.0.clone(),
        no_replica_s: round(no_replica_s),
        mean_answering: round(answering_s / sampled_s.max(1e-9)),
        timeline,
        healthy_after_s: healthy_after.map(round),
        recovery_waited_s: round(end - load_end),
        healthy_at_end,
        deaths,
        oom_kills,
        starts_by_agent: if agent_on { starts } else { 0 },
        starts_by_docker: if agent_on { 0 } else { starts },
        agent_restarts_metric,
        docker_restart_count,
        incidents: by_outcome,
        escalations,
        healthz_status,
        locust_requests: stats["stats"]
            .as_array()
            .and_then(|s| s.iter().find(|r| r["name"] == "Aggregated"))
            .and_then(|r| r["num_requests"].as_f64()),
        locust_failures: stats["stats"]
            .as_array()
            .and_then(|s| s.iter().find(|r| r["name"] == "Aggregated"))
            .and_then(|r| r["num_failures"].as_f64()),
        started_at: t0,
        load_end_at: load_end,
        failed: counts.total() - counts.served(),
        recycles: recycles.count,
        recycles_killed: recycles.killed,
        recycles_oom: recycles.oom,
        recycles_drained: recycles.drained,
        behind,
        recorded_recycle_exits,
        recycles_not_serving,
    };
    let which = healer.label();
    let harness = vec![
        CheckResult::harness(
            format!("{which}: the swarm sent requests"),
            leg.requests > 0.0,
            format!("{:.0} requests in {:.0}s", leg.requests, leg.load_s),
        ),
        if healer == Healer::Preventive {
            CheckResult::harness(
                format!("{which}: the leak brought replicas to their limit (recycles or OOM kills; else nothing was tested)"),
                leg.recycles + leg.oom_kills > 0,
                format!("{} recycles, {} OOM kills", leg.recycles, leg.oom_kills),
            )
        } else {
            CheckResult::harness(
                format!("{which}: the load killed replicas (else the legs compare nothing)"),
                leg.deaths > 0,
                format!("{} deaths, {} OOM kills", leg.deaths, leg.oom_kills),
            )
        },
        if agent_on {
            CheckResult::harness(
                format!("{which}: Docker restarted nothing (restart: no)"),
                leg.docker_restart_count == 0,
                format!("RestartCount grew by {}", leg.docker_restart_count),
            )
        } else {
            CheckResult::harness(
                format!("{which}: the agent stayed stopped, Docker restarted the replicas"),
                !agent_running && (leg.deaths == 0 || leg.docker_restart_count > 0),
                format!(
                    "agent running: {agent_running}; RestartCount grew by {}",
                    leg.docker_restart_count
                ),
            )
        },
    ];
    let actions = if agent_on {
        all_actions
            .iter()
            .map(|a| ActionSeen {
                at_s: round(a.time - t0),
                action: a.kind.label(),
                container: a.container.clone(),
                project: a.project.clone(),
                service: a.service.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(LegOutcome {
        leg,
        harness,
        actions,
        wrong,
        incidents,
    })
}

/// Deaths (`die` events) and, of those, OOM kills: a death with exit 137 after an `oom` event
/// of the same container (the kernel may report more than one `oom` for one death).
fn deaths_and_oom_kills<'a>(
    events: impl Iterator<Item = &'a crate::events::Event>,
) -> (usize, usize) {
    let mut oom_pending: std::collections::HashSet<&str> = Default::default();
    let (mut deaths, mut oom) = (0, 0);
    for e in events {
        match e.action.as_str() {
            "oom" => {
                oom_pending.insert(e.name.as_str());
            }
            "die" => {
                deaths += 1;
                if oom_pending.remove(e.name.as_str()) && e.exit_code == Some(137) {
                    oom += 1;
                }
            }
            _ => {}
        }
    }
    (deaths, oom)
}

/// The recycles Docker saw, from the agent's actions (`actions`, in time order, with `events`
/// the leg's events for the signals).
#[derive(Debug, Default, PartialEq)]
pub struct Recycles {
    pub count: usize,
    /// Of those, ended by the stop timeout's SIGKILL (the replica ignored SIGTERM), by the
    /// OOM killer during the stop, or drained (exit 0 after SIGTERM).
    pub killed: usize,
    pub oom: usize,
    pub drained: usize,
    /// Indices into `actions` that belong to a recycle (its kills, its stop, its start).
    pub actions: std::collections::HashSet<usize>,
}

/// Longest span from a recycle's SIGTERM to its `stop` event (the stop timeout, 8 s, and
/// slack), and from its `stop` to its start (Docker refusing a start is tried again).
const RECYCLE_STOP_SPAN_S: f64 = 15.0;
const RECYCLE_START_SPAN_S: f64 = 10.0;

/// A recycle is the agent's `docker stop` of a replica: the `kill` events before it (SIGTERM,
/// and SIGKILL when the stop timeout ran out), the `stop`, and the agent's next start of that
/// replica. A stop of anything else, or a kill without a stop, is no recycle.
pub fn recycles_seen(
    events: &[crate::events::Event],
    actions: &[crate::events::AgentAction],
    names: &[String],
) -> Recycles {
    let mut out = Recycles::default();
    for (i, a) in actions.iter().enumerate() {
        if a.kind != ActionKind::Other("stop".into()) || !names.contains(&a.container) {
            continue;
        }
        out.count += 1;
        out.actions.insert(i);
        let mut first_kill = a.time;
        for (j, k) in actions[..i].iter().enumerate().rev() {
            if a.time - k.time > RECYCLE_STOP_SPAN_S {
                break;
            }
            if k.container == a.container
                && k.kind == ActionKind::Other("kill".into())
                && !out.actions.contains(&j)
            {
                out.actions.insert(j);
                first_kill = k.time;
            }
        }
        if let Some((j, _)) = actions.iter().enumerate().skip(i + 1).find(|(_, s)| {
            s.container == a.container
                && s.kind == ActionKind::Start
                && s.time - a.time <= RECYCLE_START_SPAN_S
        }) {
            out.actions.insert(j);
        }
        let during: Vec<&crate::events::Event> = events
            .iter()
            .filter(|e| e.name == a.container && e.time >= first_kill && e.time <= a.time)
            .collect();
        if during.iter().any(|e| e.action == "oom") {
            out.oom += 1;
        } else if during.iter().any(|e| {
            e.action == "kill" && matches!(e.signal.as_deref(), Some("9") | Some("SIGKILL"))
        }) {
            out.killed += 1;
        } else if during
            .iter()
            .any(|e| e.action == "die" && e.exit_code == Some(0))
        {
            out.drained += 1;
        }
    }
    out
}

/// Sum of the replicas' Docker `RestartCount` (starts by the restart policy).
async fn restart_counts(stack: &Stack, names: &[String]) -> i64 {
    stack
        .docker
        .inspect(names)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v["RestartCount"].as_i64())
        .sum()
}

/// How much the agent's `healing_restarts_total{result="ok"}` grew.
fn counter_delta(before: &str, after: &str) -> Option<f64> {
    crate::runner::delta(before, after, "healing_restarts_total", &[("result", "ok")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_deaths_after_an_oom_event() {
        let ev = |t: f64, action: &str, name: &str, code: Option<i64>| crate::events::Event {
            time: t,
            action: action.into(),
            id: name.into(),
            name: name.into(),
            project: "p".into(),
            service: "webapp".into(),
            exit_code: code,
            signal: None,
        };
        let events = [
            ev(1.0, "oom", "w1", None),
            ev(1.0, "oom", "w1", None),
            ev(1.1, "die", "w1", Some(137)),
            ev(2.0, "start", "w1", None),
            ev(3.0, "die", "w2", Some(137)), // killed, no oom event
            ev(4.0, "oom", "w1", None),
            ev(4.1, "die", "w1", Some(137)),
        ];
        assert_eq!(deaths_and_oom_kills(events.iter()), (3, 2));
    }

    #[test]
    fn a_recycle_is_the_agents_stop_with_its_kills_and_its_start() {
        use crate::events::{AgentAction, Event};
        let ev = |t: f64, action: &str, name: &str, signal: Option<&str>| Event {
            time: t,
            action: action.into(),
            id: name.into(),
            name: name.into(),
            project: "p".into(),
            service: "webapp".into(),
            exit_code: None,
            signal: signal.map(str::to_string),
        };
        let exit = |mut e: Event, code: i64| {
            e.exit_code = Some(code);
            e
        };
        let act = |e: &Event| AgentAction {
            time: e.time,
            kind: match e.action.as_str() {
                "start" => ActionKind::Start,
                a => ActionKind::Other(a.into()),
            },
            container: e.name.clone(),
            project: e.project.clone(),
            service: e.service.clone(),
        };
        let events = [
            // w1 drains: SIGTERM, exit, stop, start.
            ev(10.0, "kill", "w1", Some("15")),
            exit(ev(10.4, "die", "w1", None), 0),
            ev(10.5, "stop", "w1", None),
            ev(10.6, "start", "w1", None),
            // w2 ignores SIGTERM: the stop timeout's SIGKILL 8 s later.
            ev(20.0, "kill", "w2", Some("15")),
            ev(28.0, "kill", "w2", Some("9")),
            exit(ev(28.1, "die", "w2", None), 137),
            ev(28.2, "stop", "w2", None),
            ev(28.3, "start", "w2", None),
            // w3 ignores SIGTERM too, and reaches its limit before the timeout.
            ev(30.0, "kill", "w3", Some("15")),
            ev(33.0, "oom", "w3", None),
            exit(ev(33.1, "die", "w3", None), 137),
            ev(33.2, "stop", "w3", None),
            ev(33.3, "start", "w3", None),
            // w3 dies by itself and is started: a repair, not a recycle.
            exit(ev(40.0, "die", "w3", None), 137),
            ev(41.0, "start", "w3", None),
            // A kill without a stop is no recycle (and stays a wrong action).
            ev(50.0, "kill", "w1", Some("9")),
        ];
        let actions: Vec<AgentAction> = events
            .iter()
            .filter(|e| !matches!(e.action.as_str(), "die" | "oom"))
            .map(act)
            .collect();
        let names: Vec<String> = ["w1", "w2", "w3"].map(String::from).to_vec();
        let r = recycles_seen(&events, &actions, &names);
        assert_eq!((r.count, r.drained, r.killed, r.oom), (3, 1, 1, 1));
        let mut covered: Vec<usize> = r.actions.into_iter().collect();
        covered.sort();
        // w1's kill, stop, start; w2's two kills, stop, start; w3's kill, stop, start; not
        // w3's later start (a repair) nor the last kill.
        assert_eq!(covered, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        // The stop of another service's container is not a recycle of a replica.
        let r = recycles_seen(&events, &actions, &["w9".to_string()]);
        assert_eq!(r.count, 0);
    }

    #[test]
    fn the_user_count_comes_from_the_case_name() {
        let def = |case| CaseDef {
            scenario: "sustained_load",
            case,
            about: "",
            short: &[],
            modes: &[],
            restarts_daemon: false,
        };
        assert_eq!(users_of(&def("users20")).unwrap(), 20);
        assert_eq!(users_of(&def("users5")).unwrap(), 5);
        assert!(users_of(&def("walkthrough")).is_err());
    }
}
