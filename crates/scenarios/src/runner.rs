//! One case from baseline to score: prepare, snapshot, inject, wait for the agent to settle,
//! read what happened (Docker events, incidents, notifications, metrics), score it.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clients::metric_sum;
use crate::docker::now;
use crate::events::{agent_actions, ActionKind, AgentAction};
use crate::scenarios::{self, CaseDef};
use crate::score::{score_actions, Check, CheckResult, Expect, Records};
use crate::stack::{say, Stack};

/// A fault as injected: what is expected of the agent, and how long to watch.
pub struct Injected {
    pub about: String,
    /// When the fault happened (seconds since the epoch): time to fix counts from here.
    pub fault_at: f64,
    /// Containers the fault hit: their death, pause or ill health shows the fault took effect.
    pub targets: Vec<String>,
    pub expect: Vec<Expect>,
    /// Replicas that must serve at the end.
    pub must_serve: Vec<String>,
    pub checks: Vec<Check>,
    /// Results known at injection time (e.g. "the replica was OOM-killed").
    pub harness: Vec<CheckResult>,
    /// Watch at least this long, at most `timeout`.
    pub min_observe: Duration,
    pub timeout: Duration,
    /// The agent must bring `must_serve` back (time to fix is measured).
    pub fix_expected: bool,
    /// Time-to-fix samples the scenario measured itself (several faults in one case).
    pub ttf: Vec<f64>,
    /// Alertmanager must deliver at least this many webhooks during the case (a repeat).
    pub min_webhooks: Option<usize>,
    /// Issue 8's fault runs: the agent must be alive and its memory bounded at the end.
    pub agent_checks: bool,
    /// Figures particular to the case (flood statistics, ...).
    pub figures: serde_json::Map<String, Value>,
    /// Count the agent's `POST /start` calls for this container in the socket proxy's log
    /// (a start Docker refuses leaves no container event).
    pub start_calls_of: Option<String>,
}

impl Injected {
    pub fn new(about: impl Into<String>, fault_at: f64) -> Self {
        Injected {
            about: about.into(),
            fault_at,
            targets: Vec::new(),
            expect: Vec::new(),
            must_serve: Vec::new(),
            checks: Vec::new(),
            harness: Vec::new(),
            min_observe: Duration::from_secs(5),
            timeout: Duration::from_secs(90),
            fix_expected: false,
            ttf: Vec::new(),
            min_webhooks: None,
            agent_checks: false,
            figures: serde_json::Map::new(),
            start_calls_of: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionSeen {
    /// Seconds after the fault.
    pub at_s: f64,
    pub action: String,
    pub container: String,
    pub project: String,
    pub service: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    pub mode: String,
    pub scenario: String,
    pub case: String,
    pub about: String,
    /// `correct`, `wrong`, `missed`, `wrong+missed`, `records` (actions right, a record check
    /// failed), `invalid` (the fault was not injected as intended) or `error`.
    pub verdict: String,
    pub correct_action: bool,
    pub records_ok: bool,
    pub expected: Vec<String>,
    pub actions: Vec<ActionSeen>,
    pub wrong: Vec<String>,
    pub missed: Vec<String>,
    pub checks: Vec<CheckResult>,
    pub time_to_fix_s: Vec<f64>,
    pub timed_out: bool,
    pub incidents: Vec<Value>,
    pub notifications: Vec<Value>,
    /// Model round trips and tokens of the case's incidents that had a model conversation.
    pub llm_incidents: usize,
    pub llm_turns: u64,
    pub llm_tokens: u64,
    pub fallback_incidents: usize,
    /// Where the agent's record and Docker disagree.
    pub crosscheck: Vec<String>,
    pub rss_before_bytes: Option<f64>,
    pub rss_after_bytes: Option<f64>,
    pub figures: serde_json::Map<String, Value>,
    pub duration_s: f64,
    pub error: Option<String>,
}

impl CaseResult {
    /// A case's result with its identity and nothing measured yet: the cases that do not go
    /// through the fault runner (load, preventive, an error) fill in what they have.
    pub(crate) fn blank(stack: &Stack, def: &CaseDef, started: f64) -> CaseResult {
        CaseResult {
            mode: stack.cfg.mode.clone(),
            scenario: def.scenario.into(),
            case: def.case.into(),
            about: def.about.into(),
            verdict: String::new(),
            correct_action: false,
            records_ok: false,
            expected: vec![],
            actions: vec![],
            wrong: vec![],
            missed: vec![],
            checks: vec![],
            time_to_fix_s: vec![],
            timed_out: false,
            incidents: vec![],
            notifications: vec![],
            llm_incidents: 0,
            llm_turns: 0,
            llm_tokens: 0,
            fallback_incidents: 0,
            crosscheck: vec![],
            rss_before_bytes: None,
            rss_after_bytes: None,
            figures: serde_json::Map::new(),
            duration_s: round(now() - started),
            error: None,
        }
    }

    pub(crate) fn error(stack: &Stack, def: &CaseDef, started: f64, error: String) -> CaseResult {
        say(format!("!! {}/{}: {error}", def.scenario, def.case));
        CaseResult {
            verdict: "error".into(),
            duration_s: now() - started,
            error: Some(error),
            ..CaseResult::blank(stack, def, started)
        }
    }
}

/// What the agent had recorded before the fault.
struct Snapshot {
    ids: HashSet<String>,
    metrics: String,
    notifications: usize,
}

impl Snapshot {
    async fn take(stack: &Stack) -> Snapshot {
        Snapshot {
            ids: stack
                .agent
                .incidents()
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect(),
            metrics: stack.agent.metrics().await.unwrap_or_default(),
            notifications: stack
                .sink
                .notifications()
                .await
                .map(|n| n.len())
                .unwrap_or(0),
        }
    }
}

pub async fn run_case(stack: &Stack, def: &CaseDef) -> CaseResult {
    let result = match def.scenario {
        // Two legs (the agent, then Docker's restart policy) instead of one fault.
        "sustained_load" => crate::load::run(stack, def).await,
        // One load leg with the agent recycling before the OOM kill (and a floor leg).
        "preventive" => crate::preventive::run(stack, def).await,
        _ => run_case_inner(stack, def).await,
    };
    stack.end_case();
    result
}

async fn run_case_inner(stack: &Stack, def: &CaseDef) -> CaseResult {
    let started = now();
    say(format!(
        "==== {} {}/{}: {}",
        stack.cfg.mode, def.scenario, def.case, def.about
    ));
    if let Err(e) = stack.baseline().await {
        return CaseResult::error(stack, def, started, format!("{e:#}"));
    }
    match scenarios::prepare(stack, def).await {
        Ok(true) => {
            if let Err(e) = stack.baseline().await {
                return CaseResult::error(stack, def, started, format!("after preparing: {e:#}"));
            }
        }
        Ok(false) => {}
        Err(e) => return CaseResult::error(stack, def, started, format!("preparing: {e:#}")),
    }
    let before = Snapshot::take(stack).await;
    let rss_before = stack.agent.rss_bytes().await;
    let from = now();
    let inj = match scenarios::inject(stack, def).await {
        Ok(i) => i,
        Err(e) => return CaseResult::error(stack, def, started, format!("injecting: {e:#}")),
    };
    say(format!("injected: {}", inj.about));
    let (ttf, timed_out, not_serving) = settle(stack, &inj, from).await;
    if timed_out {
        // A run still in flight records its incident when it ends: give it the time to.
        let deadline = now() + 45.0;
        while !stack.agent.idle().await && now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // Read what happened. The window closes now: actions after this belong to no record read.
    let busy_at_end = !stack.agent.idle().await;
    let metrics_after = stack.agent.metrics().await.unwrap_or_default();
    let window_end = now();
    let all = stack.agent.incidents().await.unwrap_or_default();
    let new: Vec<Value> = all
        .iter()
        .filter(|i| !i["id"].as_str().is_some_and(|id| before.ids.contains(id)))
        .cloned()
        .collect();
    let sink_all = stack.sink.notifications().await.unwrap_or_default();
    // A sink that restarted (with the daemon) holds only what came since: all of it is new.
    let skip = if sink_all.len() >= before.notifications {
        before.notifications
    } else {
        0
    };
    let notifications: Vec<Value> = sink_all.into_iter().skip(skip).collect();
    let rss_after = metric_sum(&metrics_after, "process_resident_memory_bytes", &[]);
    let mut figures = inj.figures.clone();
    if let Some(name) = &inj.start_calls_of {
        match stack.start_calls(name, inj.fault_at - 1.0).await {
            Ok(calls) => {
                say(format!(
                    "the agent's POST /start calls for {name} (socket proxy log), by Docker's answer: {calls:?}"
                ));
                figures.insert("start_calls_by_status".into(), serde_json::json!(calls));
            }
            Err(e) => say(format!("socket proxy log not read: {e:#}")),
        }
    }
    let ops = stack.docker.ops();
    let actions: Vec<AgentAction> =
        agent_actions(&stack.events.since(from - 0.5), &ops, &stack.cfg.service)
            .into_iter()
            .filter(|a| a.time >= from - 0.1 && a.time <= window_end)
            .collect();

    let score = score_actions(&actions, &inj.expect, &not_serving, inj.fault_at);
    let records = Records {
        new: &new,
        all: &all,
        notifications: &notifications,
    };
    let mut checks: Vec<CheckResult> = inj.harness.clone();
    checks.extend(inj.checks.iter().map(|c| c.evaluate(&records)));
    checks.push(Check::EscalationsNotified.evaluate(&records));
    if let Some(min) = inj.min_webhooks {
        let delta = delta(
            &before.metrics,
            &metrics_after,
            "healing_webhooks_received_total",
            &[("result", "accepted")],
        );
        checks.push(CheckResult::harness(
            format!("Alertmanager delivered at least {min} webhooks during the case (a repeat)"),
            delta.is_some_and(|d| d >= min as f64),
            format!(
                "accepted webhooks: {}",
                delta
                    .map(|d| d.to_string())
                    .unwrap_or("metric missing".into())
            ),
        ));
    }
    if inj.agent_checks {
        let alive = stack.agent.healthz().await;
        checks.push(CheckResult::agent(
            "agent alive (/healthz answers)",
            alive.is_ok(),
            match &alive {
                Ok(h) => format!("status {}", h["status"]),
                Err(e) => e.to_string(),
            },
        ));
        let limit = stack.cfg.rss_limit_bytes;
        checks.push(CheckResult::agent(
            format!("agent RSS at most {:.0} MiB", limit / 1048576.0),
            rss_after.is_some_and(|r| r <= limit),
            format!("before {}, after {}", mib(rss_before), mib(rss_after)),
        ));
    }

    let mut crosscheck = crosscheck(
        &actions,
        &new,
        &before.metrics,
        &metrics_after,
        &stack.cfg.service,
    );
    if !crosscheck.is_empty() && busy_at_end {
        crosscheck.push(
            "the agent was still healing when the case ended: that run's incident was not written yet"
                .into(),
        );
    }
    for m in &crosscheck {
        say(format!(
            "!! CROSS-CHECK MISMATCH ({}/{}): {m}",
            def.scenario, def.case
        ));
    }
    let llm: Vec<&Value> = new.iter().filter(|i| i["llm"].is_object()).collect();
    let invalid = checks.iter().any(|c| c.harness && !c.ok);
    let correct_action = score.wrong.is_empty() && score.missed.is_empty();
    let records_ok = checks.iter().filter(|c| !c.harness).all(|c| c.ok);
    let verdict = if invalid {
        "invalid"
    } else {
        match (score.wrong.is_empty(), score.missed.is_empty(), records_ok) {
            (true, true, true) => "correct",
            (true, true, false) => "records",
            (false, true, _) => "wrong",
            (true, false, _) => "missed",
            (false, false, _) => "wrong+missed",
        }
    };
    let mut time_to_fix = inj.ttf.clone();
    if let Some(t) = ttf {
        time_to_fix.push(t);
    }
    let result = CaseResult {
        mode: stack.cfg.mode.clone(),
        scenario: def.scenario.into(),
        case: def.case.into(),
        about: inj.about.clone(),
        verdict: verdict.into(),
        correct_action: correct_action && !invalid,
        records_ok,
        expected: if inj.expect.is_empty() {
            vec!["no action".into()]
        } else {
            inj.expect.iter().map(Expect::describe).collect()
        },
        actions: actions
            .iter()
            .map(|a| ActionSeen {
                at_s: round(a.time - inj.fault_at),
                action: a.kind.label(),
                container: a.container.clone(),
                project: a.project.clone(),
                service: a.service.clone(),
            })
            .collect(),
        wrong: score.wrong,
        missed: score.missed,
        checks,
        time_to_fix_s: time_to_fix.iter().map(|t| round(*t)).collect(),
        timed_out,
        llm_incidents: llm.len(),
        llm_turns: llm.iter().filter_map(|i| i["llm"]["turns"].as_u64()).sum(),
        llm_tokens: llm
            .iter()
            .map(|i| {
                i["llm"]["prompt_tokens"].as_u64().unwrap_or(0)
                    + i["llm"]["output_tokens"].as_u64().unwrap_or(0)
            })
            .sum(),
        fallback_incidents: new.iter().filter(|i| i["mode"] == "fallback").count(),
        incidents: new,
        notifications,
        crosscheck,
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        figures,
        duration_s: round(now() - started),
        error: None,
    };
    print_case(&result);
    result
}

/// Watches until the agent has settled: `min_observe` passed, the replicas that must serve do
/// (after the fault was seen to take effect, when a fix is expected), the expected actions
/// happened at least as often as due, no new action for a few seconds, the agent idle. Returns
/// the time to fix, whether it timed out, and the replicas not serving at the end.
async fn settle(stack: &Stack, inj: &Injected, from: f64) -> (Option<f64>, bool, Vec<String>) {
    const QUIET_S: f64 = 3.0;
    let mut broken_seen = false;
    let mut fixed_at: Option<f64> = None;
    let mut last_report = now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let t = now();
        let events = stack.events.since(from - 0.5);
        let actions: Vec<AgentAction> =
            agent_actions(&events, &stack.docker.ops(), &stack.cfg.service)
                .into_iter()
                .filter(|a| a.time >= from - 0.1)
                .collect();
        let serving = stack.serving(&inj.must_serve).await;
        let all_serving = inj.must_serve.iter().all(|n| serving[n]);
        broken_seen |= !all_serving
            || events.iter().any(|e| {
                e.time >= from
                    && inj.targets.contains(&e.name)
                    && matches!(
                        e.action.as_str(),
                        "die" | "pause" | "kill" | "health_status: unhealthy"
                    )
            });
        if all_serving && broken_seen {
            fixed_at.get_or_insert(t);
        } else {
            fixed_at = None; // broke again: a fix counts once it holds
        }
        let counts_met = inj.expect.iter().all(|e| {
            actions
                .iter()
                .filter(|a| a.container == e.container)
                .count()
                >= e.min
        });
        let last_action = actions.last().map(|a| a.time).unwrap_or(from);
        let elapsed = t - from;
        let fixed = !inj.fix_expected || fixed_at.is_some();
        if elapsed >= inj.min_observe.as_secs_f64()
            && fixed
            && counts_met
            && t - last_action >= QUIET_S
            && stack.agent.idle().await
        {
            let ttf = fixed_at
                .filter(|_| inj.fix_expected)
                .map(|f| f - inj.fault_at);
            let down = inj
                .must_serve
                .iter()
                .filter(|n| !serving[*n])
                .cloned()
                .collect();
            return (ttf, false, down);
        }
        if elapsed >= inj.timeout.as_secs_f64() {
            say(format!(
                "timed out after {elapsed:.0}s waiting for the agent to settle"
            ));
            let ttf = fixed_at
                .filter(|_| inj.fix_expected)
                .map(|f| f - inj.fault_at);
            let down = inj
                .must_serve
                .iter()
                .filter(|n| !serving[*n])
                .cloned()
                .collect();
            return (ttf, true, down);
        }
        if t - last_report > 15.0 {
            last_report = t;
            say(format!(
                "watching: {elapsed:.0}s, {} action(s) so far, serving {}/{}",
                actions.len(),
                serving.values().filter(|v| **v).count(),
                inj.must_serve.len()
            ));
        }
    }
}

/// How much a counter grew between two scrapes of the agent's `/metrics`; when the agent
/// restarted in between (its `process_start_time_seconds` changed) the counter began again at 0.
pub(crate) fn delta(before: &str, after: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let a = metric_sum(after, name, labels)?;
    let started = |m: &str| metric_sum(m, "process_start_time_seconds", &[]);
    if started(before) != started(after) {
        return Some(a);
    }
    Some(a - metric_sum(before, name, labels).unwrap_or(0.0))
}

/// Actions the incidents' timelines say were taken: (container, start|restart|unpause).
pub fn recorded_actions(incidents: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for inc in incidents {
        for step in inc["timeline"].as_array().into_iter().flatten() {
            if step["result"] != "ok" {
                continue;
            }
            let done = step["detail"]["action"].as_str().unwrap_or("");
            let kind = match done {
                "started" | "start" => "start",
                "restarted" | "restart" => "restart",
                "unpaused" | "unpause" => "unpause",
                _ => continue,
            };
            let target = step["target"]
                .as_str()
                .or_else(|| step["args"]["name"].as_str())
                .or_else(|| step["detail"]["name"].as_str())
                .unwrap_or("");
            out.push((target.to_string(), kind.to_string()));
        }
    }
    out
}

/// Where Docker and the agent's record disagree: actions Docker saw that no incident records,
/// actions incidents record that Docker did not see, and the restart metric against Docker.
fn crosscheck(
    actions: &[AgentAction],
    incidents: &[Value],
    metrics_before: &str,
    metrics_after: &str,
    service: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut recorded = recorded_actions(incidents);
    let seen: Vec<&AgentAction> = actions
        .iter()
        .filter(|a| {
            matches!(
                a.kind,
                ActionKind::Start | ActionKind::Restart | ActionKind::Unpause
            )
        })
        .collect();
    for a in &seen {
        let label = a.kind.label();
        match recorded
            .iter()
            .position(|(c, k)| *c == a.container && *k == label)
        {
            Some(i) => {
                recorded.remove(i);
            }
            None => out.push(format!(
                "Docker saw {label} of {}; no incident of the case records it",
                a.container
            )),
        }
    }
    for (c, k) in recorded {
        out.push(format!(
            "an incident records {k} of {c}; Docker saw no such action"
        ));
    }
    let on_service = seen.iter().filter(|a| a.service == service).count() as f64;
    if let Some(d) = delta(
        metrics_before,
        metrics_after,
        "healing_restarts_total",
        &[("result", "ok")],
    ) {
        if (d - on_service).abs() > 0.5 {
            out.push(format!(
                "healing_restarts_total{{result=\"ok\"}} grew by {d}, Docker saw {on_service} actions on {service}"
            ));
        }
    }
    out
}

pub(crate) fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn mib(b: Option<f64>) -> String {
    b.map(|b| format!("{:.1} MiB", b / 1048576.0))
        .unwrap_or_else(|| "?".into())
}

pub(crate) fn print_case(r: &CaseResult) {
    let ttf = if r.time_to_fix_s.is_empty() {
        String::new()
    } else {
        format!(
            ", time to fix {}",
            r.time_to_fix_s
                .iter()
                .map(|t| format!("{t:.1}s"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    say(format!(
        "{} {}/{}: {}{ttf} ({} incident(s), {} notification(s), {:.0}s)",
        r.mode,
        r.scenario,
        r.case,
        r.verdict.to_uppercase(),
        r.incidents.len(),
        r.notifications.len(),
        r.duration_s
    ));
    let actions: Vec<String> = r
        .actions
        .iter()
        .map(|a| format!("{} {} {:+.1}s", a.action, a.container, a.at_s))
        .collect();
    say(format!(
        "   expected: {}; agent did: {}",
        r.expected.join(", "),
        if actions.is_empty() {
            "nothing".into()
        } else {
            actions.join(", ")
        }
    ));
    for w in &r.wrong {
        say(format!("   WRONG: {w}"));
    }
    for m in &r.missed {
        say(format!("   MISSED: {m}"));
    }
    for c in &r.checks {
        say(format!(
            "   [{}] {}{}: {}",
            if c.ok { "ok" } else { "FAIL" },
            if c.harness { "(harness) " } else { "" },
            c.what,
            c.detail
        ));
    }
    if r.llm_incidents > 0 {
        say(format!(
            "   model: {} round trip(s), {} tokens over {} incident(s); {} fallback(s)",
            r.llm_turns, r.llm_tokens, r.llm_incidents, r.fallback_incidents
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_restart_with_the_agent() {
        let m = |start: u32, n: u32| {
            format!(
                "process_start_time_seconds {start}\nhealing_restarts_total{{result=\"ok\"}} {n}\n"
            )
        };
        let d = |b: &str, a: &str| delta(b, a, "healing_restarts_total", &[("result", "ok")]);
        assert_eq!(d(&m(100, 5), &m(100, 7)), Some(2.0));
        assert_eq!(d(&m(100, 5), &m(200, 1)), Some(1.0));
        assert_eq!(d(&m(100, 1), &m(200, 1)), Some(1.0));
        assert_eq!(d("", "x 1\n"), None);
    }
}
