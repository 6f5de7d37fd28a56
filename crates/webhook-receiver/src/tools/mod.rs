//! The healing tools, bound to one run of one service.
//!
//! The runbook calls the typed methods; the LLM loop reaches the same methods through
//! [`ToolExecutor`]. Every call resolves its target among the live replicas of the run's service
//! (scope), every action passes [`crate::policy::check`] first, and everything lands on the run's
//! [`RunRecord`]. Tool failures are values (the model sees them), not aborts.

pub mod guard;
pub mod record;
mod specs;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

pub use guard::{bounded as guard_bounded, ToolError};
pub use record::{Acted, GaveUp, Recurrence, RunRecord};
pub use specs::{tool_names, tool_specs};

use crate::context::Context;
use crate::diagnosis::{self, diagnose, Depth, Evidence, Observation, ProbeOutcome};
use crate::incidents::{ActionKind, ActionLevel, EscalationReason, FailureClass, ReplicaDiagnosis};
use crate::llm::{ToolExecutor, ToolOutcome, ToolSpec};
use crate::policy::{self, Actor, Verdict};
use crate::runtime::{ContainerRef, ReplicaState, Status};

/// Bounds on what a tool hands back, so outputs stay small whatever the containers say.
pub const MAX_REPLICAS_LISTED: usize = 50;
pub const MAX_LOG_LINES: usize = 100;
pub const MAX_LOG_BYTES: usize = 4000;
/// Stop timeout when restarting a running replica: a hung process will not exit on SIGTERM, and
/// every second here is a second of outage.
const RESTART_STOP_TIMEOUT_SECS: u32 = 2;
/// How often a replica's own verification polls Docker.
const POLL: Duration = Duration::from_millis(200);

/// One run's tools.
pub struct Toolbox {
    ctx: Arc<Context>,
    project: String,
    service: String,
    level: ActionLevel,
    /// The replicas this run may act on.
    claimed: Vec<String>,
    record: Arc<RunRecord>,
    /// Probes of the run's observation, by container id and start, reused when acting on the
    /// same life of a replica (a hung replica costs seconds to probe).
    probes: HashMap<(String, Option<DateTime<Utc>>), ProbeOutcome>,
}

impl Toolbox {
    pub fn new(
        ctx: Arc<Context>,
        project: &str,
        service: &str,
        claimed: Vec<String>,
        record: Arc<RunRecord>,
        observation: &Observation,
    ) -> Self {
        let probes = observation
            .replicas
            .iter()
            .filter_map(|o| {
                let p = o.probe.clone()?;
                Some(((o.state.container.id.clone(), o.state.started_at), p))
            })
            .collect();
        Toolbox {
            ctx,
            project: project.to_string(),
            service: service.to_string(),
            level: observation.level,
            claimed,
            record,
            probes,
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    pub fn record(&self) -> &Arc<RunRecord> {
        &self.record
    }

    /// The replicas this run may act on.
    pub fn claimed(&self) -> &[String] {
        &self.claimed
    }

    /// A bookkeeping step of the agent's own on the timeline.
    pub fn note(&self, action: &str, target: Option<&str>, result: &str, detail: Value) {
        self.record.push(
            self.ctx.clock.now(),
            Actor::Agent,
            action,
            target,
            Value::Null,
            result,
            detail,
        );
    }

    /// Live state of the service, diagnosed.
    pub async fn observe(&self, depth: Depth) -> Result<Observation, ToolError> {
        Ok(diagnosis::observe(&self.ctx, &self.project, &self.service, depth).await?)
    }

    /// Live replicas of the run's service: the only containers any tool may touch.
    async fn replicas(&self) -> Result<Vec<ContainerRef>, ToolError> {
        Ok(self.ctx.runtime.list(&self.project, &self.service).await?)
    }

    async fn resolve(&self, name: &str) -> Result<ContainerRef, ToolError> {
        guard::resolve(&self.replicas().await?, name, &self.service, &self.project)
    }

    /// `list_webapp_status`.
    pub async fn list_status(&self, by: Actor) -> Result<Value, ToolError> {
        let depth = Depth {
            memory: true,
            ..Depth::FULL
        };
        let result = self.observe(depth).await.map(|obs| {
            let total = obs.replicas.len();
            let replicas: Vec<Value> = obs
                .replicas
                .iter()
                .take(MAX_REPLICAS_LISTED)
                .map(|o| {
                    let mut v = serde_json::to_value(&o.diagnosis).expect("diagnosis serialises");
                    v["in_this_run"] = json!(self.claimed.contains(&o.diagnosis.name));
                    v
                })
                .collect();
            json!({
                "service": self.service,
                "replicas": replicas,
                "total": total,
                "running": obs.replicas.iter().filter(|o| o.state.status == Status::Running).count(),
                "needs_healing": obs.replicas.iter().filter(|o| o.diagnosis.needs_healing).count(),
                "service_url": obs.service_probe,
                "truncated": total > MAX_REPLICAS_LISTED,
            })
        });
        self.finish(by, "list_webapp_status", None, Value::Null, result)
    }

    /// `restart_container`: the action the replica's class allows (start an exited replica,
    /// unpause a paused one, restart a running one that is unhealthy or hung), if the policy
    /// allows it now. For the model, the replica's own verification comes with the result.
    pub async fn act(&self, name: &str, by: Actor) -> Result<Value, ToolError> {
        let result = self.act_inner(name, by).await;
        let metric = match &result {
            Ok(v) if v.get("dry_run").is_some() => None,
            Ok(_) => Some("ok"),
            Err(ToolError::Runtime(_)) => Some("error"),
            Err(_) => Some("denied"),
        };
        if let Some(m) = metric {
            self.ctx
                .metrics
                .restarts
                .with_label_values(&[self.service.as_str(), m])
                .inc();
        }
        self.finish(
            by,
            "restart_container",
            Some(name),
            json!({ "name": name }),
            result,
        )
    }

    async fn act_inner(&self, name: &str, by: Actor) -> Result<Value, ToolError> {
        let requests = self.record.count_request(by);
        if let Some(Verdict::Stop(reason)) = policy::request_cap(by, requests, self.claimed.len()) {
            return Err(ToolError::Stop(reason));
        }
        let target = self.resolve(name).await?;
        let state = self.ctx.runtime.inspect(&target, false).await?;
        let now = self.ctx.clock.now();
        let diag = self.diagnose_live(&state, now).await;
        let healthy_for = state
            .healthy_for(now, state.has_healthcheck())
            .to_std()
            .unwrap_or_default();
        if diag.action != ActionKind::None
            && self.ctx.budget.reset_if_stable(&target.name, healthy_for)
        {
            tracing::debug!(container = %target.name, healthy_s = healthy_for.as_secs(), "ran healthy for the stable period before failing; fresh restart budget");
        }
        let crash_tries = self
            .ctx
            .history
            .count(&target.name, FailureClass::CrashedOnStart, now);
        let budget = self.ctx.budget.check(&target.name, now);
        let verdict = policy::check(&policy::Request {
            actor: by,
            diagnosis: &diag,
            level: self.level,
            claimed: self.claimed.contains(&target.name),
            already_acted: self.record.has_acted_on(&target.id),
            requests,
            replicas: self.claimed.len(),
            crash_tries,
            max_crash_tries: self.ctx.history.policy().crash_on_start_tries,
            budget: budget.clone(),
        });
        let (action, wait, attempt) = match verdict {
            Verdict::Stop(reason) => return Err(ToolError::Stop(reason)),
            Verdict::Deny { reason, give_up } => {
                if let Some(why) = give_up {
                    self.record.give_up(GaveUp {
                        name: target.name.clone(),
                        reason: why,
                        detail: escalation_detail(&diag, why),
                        count: give_up_count(why, crash_tries, &budget),
                    });
                }
                return Err(ToolError::Denied(reason));
            }
            Verdict::Allow {
                action,
                wait,
                attempt,
            } => (action, wait, attempt),
        };
        if !wait.is_zero() {
            tracing::info!(container = %target.name, wait_ms = wait.as_millis() as u64, "restart backoff");
            tokio::time::sleep(wait).await;
        }
        if self.ctx.dry_run {
            return Ok(json!({
                "name": target.name, "class": diag.class, "action": "none",
                "dry_run": true, "would": action,
            }));
        }
        // The time the action began: a replica that crashes on start may die before Docker even
        // answers, and its death must still count as after the action.
        let at = self.ctx.clock.now();
        let done = match action {
            ActionKind::Start => self.ctx.runtime.start(&target.id).await,
            ActionKind::Unpause => self.ctx.runtime.unpause(&target.id).await,
            ActionKind::Restart => self.restart_running(&target).await,
            ActionKind::None => unreachable!("the policy never allows no action"),
        };
        done?;
        self.record.confirm(Acted {
            container: target.clone(),
            action,
            class: diag.class,
            at,
            by,
        });
        self.ctx.budget.record(&self.service, &target.name, at);
        if let Some(count) = self.ctx.history.record(&target.name, diag.class, at) {
            self.record.recur(Recurrence {
                name: target.name.clone(),
                class: diag.class,
                count,
            });
        }
        tracing::info!(container = %target.name, action = action.as_str(), class = diag.class.as_str(), attempt, by = by.as_str(), "replica acted on");
        let mut out = json!({
            "name": target.name,
            "action": action,
            "class": diag.class,
            "previous_status": diag.status,
            "exit_code": diag.exit_code,
            "oom_killed": diag.oom_killed,
            "attempt": attempt,
            "budget": self.ctx.budget.policy().max_restarts,
        });
        if by == Actor::Llm {
            out["verification"] = self.wait_serving(&target, at).await;
        }
        Ok(out)
    }

    /// Restarts a running replica, marking the events of the restart as the agent's own until
    /// the container's new start.
    async fn restart_running(
        &self,
        target: &ContainerRef,
    ) -> Result<(), crate::runtime::RuntimeError> {
        self.ctx.own.begin(&target.id, self.ctx.clock.now());
        let r = self
            .ctx
            .runtime
            .restart(&target.id, RESTART_STOP_TIMEOUT_SECS)
            .await;
        let new_start = match &r {
            Ok(()) => self
                .ctx
                .runtime
                .inspect(target, false)
                .await
                .ok()
                .and_then(|s| s.started_at),
            Err(_) => None,
        };
        self.ctx.own.end(
            &target.id,
            new_start.unwrap_or_else(|| self.ctx.clock.now()),
        );
        r
    }

    /// The diagnosis of `state` now, reusing the run's probe of the same life of the replica.
    async fn diagnose_live(&self, state: &ReplicaState, now: DateTime<Utc>) -> ReplicaDiagnosis {
        let probe = if state.status == Status::Running {
            match self
                .probes
                .get(&(state.container.id.clone(), state.started_at))
            {
                Some(p) => Some(p.clone()),
                None => diagnosis::probe_replica(&self.ctx, state).await,
            }
        } else {
            None
        };
        diagnose(Evidence {
            state,
            probe: probe.as_ref(),
            stop_seen_at: self.ctx.stops.get(&state.container.id),
            daemon_outage: state
                .finished_at
                .is_some_and(|f| self.ctx.outages.covers(f)),
            logs_tail: Vec::new(),
            now,
            stable_after: self.ctx.stable_after,
        })
    }

    /// Polls one replica until it serves again, dies again, or the time is up.
    async fn wait_serving(&self, target: &ContainerRef, acted_at: DateTime<Utc>) -> Value {
        let deadline = tokio::time::Instant::now() + self.ctx.verify_timeout;
        loop {
            let state = match self.ctx.runtime.inspect(target, false).await {
                Ok(s) => s,
                Err(e) => return json!({ "serving": false, "error": e.to_string() }),
            };
            let summary = |serving: bool| {
                json!({
                    "serving": serving,
                    "status": diagnosis::status_str(state.status),
                    "health": state.health.map(|h| format!("{h:?}").to_lowercase()),
                })
            };
            if state.is_serving() {
                return summary(true);
            }
            if state.is_exited() && state.finished_at.is_some_and(|f| f >= acted_at) {
                let mut v = summary(false);
                v["exit_code"] = json!(state.exit_code);
                v["note"] = json!("it exited again after the action");
                return v;
            }
            if tokio::time::Instant::now() + POLL > deadline {
                let mut v = summary(false);
                v["note"] = json!("not serving yet when the wait ended");
                return v;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `check_webapp_health`: the service through its load balancer, and how many replicas serve.
    pub async fn check_health(&self, by: Actor) -> Result<Value, ToolError> {
        let depth = Depth {
            service: true,
            ..Depth::STATE_ONLY
        };
        let result = self.observe(depth).await.map(|obs| {
            let serving = obs.replicas.iter().filter(|o| o.state.is_serving()).count();
            let url_ok = obs.service_probe.as_ref().is_none_or(|p| p.ok);
            json!({
                "healthy": url_ok && serving == obs.replicas.len() && !obs.replicas.is_empty(),
                "replicas_serving": serving,
                "replicas_total": obs.replicas.len(),
                "http": obs.service_probe,
            })
        });
        self.finish(by, "check_webapp_health", None, Value::Null, result)
    }

    /// `get_container_logs`: the last lines of one replica, bounded.
    pub async fn logs(&self, name: &str, lines: usize, by: Actor) -> Result<Value, ToolError> {
        let lines = lines.clamp(1, MAX_LOG_LINES);
        let result = async {
            let target = self.resolve(name).await?;
            let text = self.ctx.runtime.logs_tail(&target.id, lines).await?;
            Ok(json!({ "name": target.name, "lines": lines, "logs": guard::bounded_tail(&text, MAX_LOG_BYTES) }))
        }
        .await;
        self.finish(
            by,
            "get_container_logs",
            Some(name),
            json!({ "name": name, "lines": lines }),
            result,
        )
    }

    /// `inspect_container`: the diagnosis of one replica, with its memory use.
    pub async fn inspect(&self, name: &str, by: Actor) -> Result<Value, ToolError> {
        let result = async {
            let target = self.resolve(name).await?;
            let state = self.ctx.runtime.inspect(&target, true).await?;
            let diag = self.diagnose_live(&state, self.ctx.clock.now()).await;
            Ok(json!({ "replica": diag, "in_this_run": self.claimed.contains(&target.name) }))
        }
        .await;
        self.finish(
            by,
            "inspect_container",
            Some(name),
            json!({ "name": name }),
            result,
        )
    }

    fn finish(
        &self,
        by: Actor,
        tool: &str,
        target: Option<&str>,
        args: Value,
        result: Result<Value, ToolError>,
    ) -> Result<Value, ToolError> {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ToolError::Stop(_)) => "stop",
            Err(_) => "error",
        };
        // The one place model tool calls are counted.
        if by == Actor::Llm {
            self.ctx
                .metrics
                .tool_calls
                .with_label_values(&[tool, outcome])
                .inc();
        }
        let detail = match &result {
            Ok(v) => v.clone(),
            Err(e) => json!({ "error": e.to_string() }),
        };
        self.record.push(
            self.ctx.clock.now(),
            by,
            tool,
            target,
            args,
            outcome,
            detail,
        );
        result
    }
}

/// How many attempts led to giving up.
pub fn give_up_count(
    why: EscalationReason,
    crash_tries: u32,
    budget: &crate::budget::BudgetDecision,
) -> u32 {
    match (why, budget) {
        (EscalationReason::CrashOnStart, _) => crash_tries,
        (_, crate::budget::BudgetDecision::Exhausted { attempts }) => *attempts,
        _ => 1,
    }
}

/// What a human needs to know about a replica the agent gives up on.
pub fn escalation_detail(d: &ReplicaDiagnosis, why: EscalationReason) -> String {
    let tail: Vec<&str> = d
        .logs_tail
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(String::as_str)
        .collect();
    let logs = if tail.is_empty() {
        String::new()
    } else {
        format!("; last log lines: {}", tail.join(" | "))
    };
    let code = d
        .exit_code
        .map(|c| format!("exit code {c}, "))
        .unwrap_or_default();
    match why {
        EscalationReason::CrashOnStart => format!(
            "{} crashes on every start ({code}{}){logs}: fix its configuration or image, then POST /reset?replica={}",
            d.name, d.reason, d.name
        ),
        EscalationReason::BudgetSpent => format!(
            "{} keeps failing ({code}class {}): its restart budget is spent{logs}",
            d.name,
            d.class.as_str()
        ),
        EscalationReason::Recurrence | EscalationReason::OutOfScope => {
            format!("{}: {}{logs}", d.name, d.reason)
        }
    }
}

#[async_trait]
impl ToolExecutor for Toolbox {
    fn specs(&self) -> Vec<ToolSpec> {
        tool_specs()
    }

    async fn call(&self, name: &str, args: &Value) -> ToolOutcome {
        let result = match specs::parse_call(name, args) {
            Err(e) => {
                let tool = if tool_names().contains(&name) {
                    name
                } else {
                    "unknown"
                };
                self.finish(
                    Actor::Llm,
                    tool,
                    None,
                    json!({ "tool": guard::bounded(name, 64), "args": args }),
                    Err(e),
                )
            }
            Ok(specs::Call::ListStatus) => self.list_status(Actor::Llm).await,
            Ok(specs::Call::Restart { name }) => self.act(&name, Actor::Llm).await,
            Ok(specs::Call::CheckHealth) => self.check_health(Actor::Llm).await,
            Ok(specs::Call::Logs { name, lines }) => self.logs(&name, lines, Actor::Llm).await,
            Ok(specs::Call::Inspect { name }) => self.inspect(&name, Actor::Llm).await,
        };
        match result {
            Ok(v) => ToolOutcome::Ok(v),
            Err(ToolError::Stop(reason)) => ToolOutcome::Stop(reason),
            Err(e) => ToolOutcome::Error(e.to_string()),
        }
    }
}
