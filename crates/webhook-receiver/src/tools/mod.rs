//! The healing tools, bound to one run of one service.
//!
//! The runbook calls the typed methods; the LLM loop reaches the same methods through
//! [`ToolExecutor`]. Every call resolves its target among the live replicas of the run's service
//! (scope); every action is claimed (by container id) before any await, decided by
//! [`crate::policy::decide`] on facts gathered once from live state, looked at again after any
//! backoff wait, and recorded in the ledger once Docker confirmed it. Everything lands on the
//! run's [`RunRecord`]. Tool failures are values (the model sees them), not aborts.

mod act;
pub mod guard;
pub mod record;
mod specs;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

pub use act::escalation_detail;
pub use guard::ToolError;
pub use record::{Acted, GaveUp, Recurrence, RunRecord};
pub use specs::{tool_names, tool_specs};

use crate::context::Context;
use crate::diagnosis::{self, Depth, Observation, ProbeOutcome};
use crate::incidents::ActionLevel;
use crate::llm::{ToolExecutor, ToolOutcome, ToolSpec};
use crate::policy::Actor;
use crate::runtime::{ContainerRef, Status};

/// Bounds on what a tool hands back, so outputs stay small whatever the containers say.
pub const MAX_REPLICAS_LISTED: usize = 50;
pub const MAX_LOG_LINES: usize = 100;
pub const MAX_LOG_BYTES: usize = 4000;

/// One run's tools.
pub struct Toolbox {
    ctx: Arc<Context>,
    project: String,
    service: String,
    level: ActionLevel,
    /// The replicas this run may act on (claimed by id).
    claimed: Vec<ContainerRef>,
    claimed_names: Vec<String>,
    /// Every replica of the service as the run found it: names resolve here, without an await.
    known: Vec<ContainerRef>,
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
        claimed: Vec<ContainerRef>,
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
            claimed_names: claimed.iter().map(|c| c.name.clone()).collect(),
            claimed,
            known: observation
                .replicas
                .iter()
                .map(|o| o.state.container.clone())
                .collect(),
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
        &self.claimed_names
    }

    fn claims(&self, id: &str) -> bool {
        self.claimed.iter().any(|c| c.id == id)
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
                    v["in_this_run"] = json!(self.claims(&o.state.container.id));
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
            let text = self.ctx.runtime.logs_tail(&target.name, lines).await?;
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
            let diag = self.diagnose_live(&state).await;
            Ok(json!({ "replica": diag, "in_this_run": self.claims(&target.id) }))
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
