//! The healing tools, bound to one run of one service.
//!
//! The runbook calls the typed methods; the LLM loop reaches the same methods through
//! [`ToolExecutor`]. Either way every call passes the same guard first: the container must be a live
//! replica of the run's service in the agent's project, a restart must be needed and within budget,
//! and in dry-run mode nothing is changed. Tool failures are values (the model sees them), not aborts.
//! Every call lands on the run's timeline.

mod guard;
mod specs;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{json, Value};

pub use guard::{bounded as guard_bounded, ToolError};
pub use specs::{tool_names, tool_specs};

use crate::budget::{BudgetDecision, RestartBudget};
use crate::incidents::{ActionRecord, ReplicaDiagnosis};
use crate::llm::{ToolExecutor, ToolOutcome, ToolSpec};
use crate::metrics::Metrics;
use crate::runtime::{ContainerRef, ContainerRuntime, ReplicaState, Status};

/// Bounds on what a tool hands back, so outputs stay small whatever the containers say.
pub const MAX_REPLICAS_LISTED: usize = 50;
pub const MAX_LOG_LINES: usize = 100;
pub const MAX_LOG_BYTES: usize = 4000;
/// Restarts (including denied attempts) one run may ask for, per replica, before the run is stopped.
const MAX_ACTIONS_PER_REPLICA: usize = 3;

/// One GET of the service's health URL: `ok` (true when no URL is configured) and what to record.
pub struct Probe {
    pub ok: bool,
    pub detail: Value,
}

/// Who asked for a tool call, for the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Runbook,
    Llm,
    Agent,
}

impl Actor {
    fn as_str(self) -> &'static str {
        match self {
            Actor::Runbook => "runbook",
            Actor::Llm => "llm",
            Actor::Agent => "agent",
        }
    }
}

/// What the tools share across runs.
pub struct ToolContext {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub budget: Arc<RestartBudget>,
    pub metrics: Metrics,
    pub http: reqwest::Client,
    /// The service-level health URL (through the load balancer); `None` skips that check.
    pub health_url: Option<String>,
    pub dry_run: bool,
    /// Container ids the agent is restarting right now: their `die` events are its own doing.
    pub own_restarts: Mutex<HashSet<String>>,
}

/// One run's tools.
pub struct Toolbox {
    ctx: Arc<ToolContext>,
    project: String,
    service: String,
    timeline: Mutex<Vec<ActionRecord>>,
    touched: Mutex<HashSet<String>>,
    restarted: Mutex<Vec<ContainerRef>>,
    gave_up: Mutex<Vec<String>>,
    attempts: Mutex<usize>,
    /// Leave replicas that were stopped on purpose alone (runs triggered by Docker events only).
    respect_stops: bool,
}

impl Toolbox {
    pub fn new(ctx: Arc<ToolContext>, project: &str, service: &str) -> Self {
        Toolbox {
            ctx,
            project: project.to_string(),
            service: service.to_string(),
            timeline: Mutex::new(Vec::new()),
            touched: Mutex::new(HashSet::new()),
            restarted: Mutex::new(Vec::new()),
            gave_up: Mutex::new(Vec::new()),
            attempts: Mutex::new(0),
            respect_stops: false,
        }
    }

    /// For runs that only Docker events asked for: a replica stopped on purpose (`docker compose
    /// stop`/`down`, an operator) is not theirs to undo. An alert about the missing replica,
    /// which starts a run without this, heals it.
    pub fn respecting_stops(mut self) -> Self {
        self.respect_stops = true;
        self
    }

    /// Whether this run heals `s`: it needs healing, and was not stopped on purpose when the
    /// run respects stops. The engine, the runbook and the guard all use this one rule.
    pub fn should_heal(&self, s: &ReplicaState) -> bool {
        s.needs_healing() && !(self.respect_stops && s.stopped_on_purpose())
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn context(&self) -> &Arc<ToolContext> {
        &self.ctx
    }

    /// Containers this run started or restarted.
    pub fn restarted(&self) -> Vec<ContainerRef> {
        self.restarted.lock().expect("lock").clone()
    }

    /// Replicas whose restart budget was spent during this run.
    pub fn gave_up(&self) -> Vec<String> {
        self.gave_up.lock().expect("lock").clone()
    }

    pub fn take_timeline(&self) -> Vec<ActionRecord> {
        std::mem::take(&mut *self.timeline.lock().expect("lock"))
    }

    pub fn note(&self, action: &str, target: Option<&str>, result: &str, detail: Value) {
        self.push(Actor::Agent, action, target, Value::Null, result, detail);
    }

    fn push(
        &self,
        by: Actor,
        action: &str,
        target: Option<&str>,
        args: Value,
        result: &str,
        detail: Value,
    ) {
        self.timeline.lock().expect("lock").push(ActionRecord {
            at: Utc::now(),
            action: action.to_string(),
            target: target.map(str::to_string),
            args,
            result: result.to_string(),
            detail,
            by: by.as_str().to_string(),
        });
    }

    /// Live replicas of the run's service: the only containers any tool may touch.
    async fn replicas(&self) -> Result<Vec<ContainerRef>, ToolError> {
        Ok(self.ctx.runtime.list(&self.project, &self.service).await?)
    }

    /// Live state of every replica, sorted by name: what the engine, the runbook and the
    /// verification poll. No memory reading: `docker stats` is slow on a loaded daemon, and
    /// this is on the path to recovery.
    pub async fn observe(&self) -> Result<Vec<ReplicaState>, ToolError> {
        self.observe_inner(false).await
    }

    /// As [`Toolbox::observe`], with each running replica's memory use (for diagnosis tools).
    pub async fn observe_with_memory(&self) -> Result<Vec<ReplicaState>, ToolError> {
        self.observe_inner(true).await
    }

    async fn observe_inner(&self, memory: bool) -> Result<Vec<ReplicaState>, ToolError> {
        let refs = self.replicas().await?;
        let states = futures_util::future::join_all(
            refs.iter().map(|r| self.ctx.runtime.inspect(r, memory)),
        )
        .await;
        let mut out = Vec::with_capacity(states.len());
        for s in states {
            match s {
                Ok(s) => out.push(s),
                // Removed between list and inspect: it is no longer ours to heal.
                Err(crate::runtime::RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// `list_webapp_status`.
    pub async fn list_status(&self, by: Actor) -> Result<Value, ToolError> {
        let result = self.observe_with_memory().await.map(|states| {
            let total = states.len();
            let needs = states.iter().filter(|s| s.needs_healing()).count();
            let running = states
                .iter()
                .filter(|s| s.status == Status::Running)
                .count();
            let replicas: Vec<Value> = states
                .iter()
                .take(MAX_REPLICAS_LISTED)
                .map(|s| serde_json::to_value(diagnose(s)).expect("serialises"))
                .collect();
            json!({
                "service": self.service,
                "replicas": replicas,
                "total": total,
                "running": running,
                "needs_healing": needs,
                "truncated": total > MAX_REPLICAS_LISTED,
            })
        });
        self.finish(by, "list_webapp_status", None, Value::Null, result)
    }

    /// `restart_container`: start a stopped replica, restart an unhealthy one.
    pub async fn restart(&self, name: &str, by: Actor) -> Result<Value, ToolError> {
        let result = self.restart_inner(name).await;
        let metric = match &result {
            Ok(_) => "ok",
            Err(ToolError::Runtime(_)) => "error",
            Err(_) => "denied",
        };
        // A dry run changes nothing, so it counts as no restart at all.
        if !self.ctx.dry_run || result.is_err() {
            self.ctx
                .metrics
                .restarts
                .with_label_values(&[self.service.as_str(), metric])
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

    async fn restart_inner(&self, name: &str) -> Result<Value, ToolError> {
        let replicas = self.replicas().await?;
        {
            let mut attempts = self.attempts.lock().expect("lock");
            *attempts += 1;
            if *attempts > MAX_ACTIONS_PER_REPLICA * replicas.len().max(1) {
                return Err(ToolError::Stop(
                    "too many restart requests in one run".into(),
                ));
            }
        }
        let target = guard::resolve(&replicas, name, &self.service, &self.project)?;
        let state = self.ctx.runtime.inspect(&target, false).await?;
        guard::needs_restart(&state)?;
        if self.respect_stops && state.stopped_on_purpose() {
            return Err(ToolError::NotNeeded(format!(
                "{} was stopped on purpose (exit {}); this run leaves it alone (an alert heals it if it stays missing)",
                target.name,
                state.exit_code.unwrap_or_default()
            )));
        }
        if !self.touched.lock().expect("lock").insert(target.id.clone()) {
            return Ok(
                json!({ "name": target.name, "action": "none", "note": "already restarted in this run" }),
            );
        }
        if self.ctx.dry_run {
            return Ok(
                json!({ "name": target.name, "action": "none", "dry_run": true,
                              "would": if state.status == Status::Running { "restart" } else { "start" } }),
            );
        }
        // Did the replica's last run come up (healthy) or last a while? Then this is no crash loop.
        let uptime = match (state.started_at, state.finished_at) {
            (Some(start), Some(end)) if state.status != Status::Running => end - start,
            (Some(start), _) => Utc::now() - start,
            _ => chrono::Duration::zero(),
        };
        let healthy_for = match state.became_healthy {
            true => uptime.to_std().unwrap_or_default(),
            false => Duration::ZERO,
        };
        if self.ctx.budget.reset_if_stable(&target.name, healthy_for) {
            tracing::debug!(container = %target.name, uptime_s = uptime.num_seconds(), "came up and served before failing; fresh restart budget");
        }
        let attempt = match self.ctx.budget.check(&target.name, Utc::now()) {
            BudgetDecision::Exhausted { attempts } => {
                self.gave_up.lock().expect("lock").push(target.name.clone());
                return Err(ToolError::BudgetExhausted {
                    name: target.name.clone(),
                    attempts,
                });
            }
            BudgetDecision::Allowed { wait, attempt } => {
                if !wait.is_zero() {
                    tracing::info!(container = %target.name, wait_ms = wait.as_millis() as u64, "restart backoff");
                    tokio::time::sleep(wait).await;
                }
                attempt
            }
        };
        self.ctx
            .budget
            .record(&self.service, &target.name, Utc::now());
        let action = if state.status == Status::Running {
            self.ctx
                .own_restarts
                .lock()
                .expect("lock")
                .insert(target.id.clone());
            let r = self.ctx.runtime.restart(&target.id, 5).await;
            let ctx = self.ctx.clone();
            let id = target.id.clone();
            // Forget the id once its die event has had time to arrive.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(15)).await;
                ctx.own_restarts.lock().expect("lock").remove(&id);
            });
            r?;
            "restarted"
        } else {
            self.ctx.runtime.start(&target.id).await?;
            "started"
        };
        self.restarted.lock().expect("lock").push(target.clone());
        tracing::info!(container = %target.name, action, attempt, "replica restarted");
        Ok(json!({
            "name": target.name,
            "action": action,
            "previous_status": state.status,
            "exit_code": state.exit_code,
            "oom_killed": state.oom_killed,
            "attempt": attempt,
            "budget": self.ctx.budget.policy().max_restarts,
        }))
    }

    /// `check_webapp_health`: the service through its load balancer, and how many replicas serve.
    pub async fn check_health(&self, by: Actor) -> Result<Value, ToolError> {
        let result = async {
            let states = self.observe().await?;
            let serving = states.iter().filter(|s| s.is_serving()).count();
            let http = self.probe_url().await;
            Ok(json!({
                "healthy": http.ok && serving == states.len() && !states.is_empty(),
                "replicas_serving": serving,
                "replicas_total": states.len(),
                "http": http.detail,
            }))
        }
        .await;
        self.finish(by, "check_webapp_health", None, Value::Null, result)
    }

    /// GET the health URL once; `None` when no URL is configured.
    pub async fn probe_url(&self) -> Probe {
        let Some(url) = self.ctx.health_url.as_deref() else {
            return Probe {
                ok: true,
                detail: Value::Null,
            };
        };
        let started = Instant::now();
        let r = self
            .ctx
            .http
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let ms = started.elapsed().as_millis() as u64;
        let (ok, detail) = match r {
            Ok(resp) => {
                let ok = resp.status().is_success();
                (
                    ok,
                    json!({ "url": url, "status": resp.status().as_u16(), "ok": ok, "latency_ms": ms }),
                )
            }
            Err(e) => (
                false,
                json!({ "url": url, "ok": false, "error": guard::bounded(&e.to_string(), 200), "latency_ms": ms }),
            ),
        };
        Probe { ok, detail }
    }

    /// `get_container_logs`: the last lines of one replica, bounded.
    pub async fn logs(&self, name: &str, lines: usize, by: Actor) -> Result<Value, ToolError> {
        let lines = lines.clamp(1, MAX_LOG_LINES);
        let result = async {
            let target = guard::resolve(&self.replicas().await?, name, &self.service, &self.project)?;
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

    /// `inspect_container`: the diagnosis of one replica.
    pub async fn inspect(&self, name: &str, by: Actor) -> Result<Value, ToolError> {
        let result = async {
            let target =
                guard::resolve(&self.replicas().await?, name, &self.service, &self.project)?;
            let state = self.ctx.runtime.inspect(&target, true).await?;
            Ok(json!({
                "replica": diagnose(&state),
                "started_at": state.started_at,
            }))
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
        self.push(by, tool, target, args, outcome, detail);
        result
    }
}

/// A replica's state as recorded in incidents and shown to the model.
pub fn diagnose(s: &ReplicaState) -> ReplicaDiagnosis {
    ReplicaDiagnosis {
        name: s.container.name.clone(),
        status: serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        exit_code: s.exit_code,
        oom_killed: s.oom_killed,
        health: s
            .health
            .and_then(|h| serde_json::to_value(h).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
        restart_count: s.restart_count,
        finished_at: if s.status == Status::Running {
            None
        } else {
            s.finished_at
        },
        memory_usage_bytes: s.memory_usage,
        memory_limit_bytes: s.memory_limit,
        needs_healing: s.needs_healing(),
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
                self.ctx
                    .metrics
                    .tool_calls
                    .with_label_values(&["unknown", "error"])
                    .inc();
                self.push(
                    Actor::Llm,
                    "invalid_call",
                    None,
                    json!({ "tool": guard::bounded(name, 64), "args": args }),
                    "error",
                    json!({ "error": e.to_string() }),
                );
                Err(e)
            }
            Ok(specs::Call::ListStatus) => self.list_status(Actor::Llm).await,
            Ok(specs::Call::Restart { name }) => self.restart(&name, Actor::Llm).await,
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
