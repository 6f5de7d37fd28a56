//! One healing run of one service, from live state to a recorded incident.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;

use super::strategy::{Brief, Runbook, Strategy};
use super::verify::verify;
use super::Engine;
use crate::incidents::{
    Incident, LlmRecord, Mode, Outcome, ReplicaDiagnosis, TriggerKind, TriggerRecord,
};
use crate::runtime::{ContainerRef, ReplicaState};
use crate::tools::{diagnose, Actor, Toolbox};

/// What a run has learnt so far; [`Draft::close`] turns it into the incident.
struct Draft {
    id: String,
    service: String,
    project: String,
    triggers: Vec<TriggerRecord>,
    mode: Mode,
    started_at: DateTime<Utc>,
    run_started_at: DateTime<Utc>,
    clock: Instant,
    diagnosis: Vec<ReplicaDiagnosis>,
    llm: Option<LlmRecord>,
    fallback_reason: Option<String>,
}

impl Draft {
    fn close(
        self,
        tools: Toolbox,
        outcome: Outcome,
        resolved_at: Option<DateTime<Utc>>,
        summary: String,
    ) -> Incident {
        tracing::info!(outcome = outcome.as_str(), mode = self.mode.as_str(), %summary, "healing run finished");
        Incident {
            id: self.id,
            service: self.service,
            project: self.project,
            trigger: self.triggers[0].kind,
            triggers: self.triggers,
            mode: self.mode,
            outcome,
            started_at: self.started_at,
            resolved_at,
            mttr_seconds: resolved_at
                .map(|r| (r - self.started_at).num_milliseconds() as f64 / 1000.0),
            run_started_at: self.run_started_at,
            run_seconds: self.clock.elapsed().as_secs_f64(),
            diagnosis: self.diagnosis,
            timeline: tools.take_timeline(),
            llm: self.llm,
            fallback_reason: self.fallback_reason,
            summary,
        }
    }

    /// The runbook takes over from a strategy that failed or left replicas down.
    async fn fall_back(&mut self, tools: &Toolbox, brief: &Brief, reason: String) {
        tracing::warn!(%reason, "the runbook finishes the job");
        self.mode = Mode::Fallback;
        self.fallback_reason = Some(reason);
        Runbook.heal(tools, brief).await;
    }
}

impl Engine {
    pub(super) async fn run(
        &self,
        id: &str,
        service: &str,
        mut triggers: Vec<TriggerRecord>,
    ) -> Incident {
        triggers.sort_by_key(|t| t.at);
        let span = tracing::info_span!("incident", id = %id, service = %service);
        self.run_inner(id, service, triggers).instrument(span).await
    }

    async fn run_inner(&self, id: &str, service: &str, triggers: Vec<TriggerRecord>) -> Incident {
        let inner = &self.inner;
        let tools = Toolbox::new(inner.ctx.clone(), inner.scope.project(), service);
        let tools = if triggers.iter().any(|t| t.kind == TriggerKind::Alert) {
            tools
        } else {
            tools.respecting_stops()
        };
        let first = triggers.first().cloned().expect("a run has a trigger");
        tracing::info!(trigger = ?first.kind, name = %first.name, coalesced = triggers.len(), "healing run started");
        let mut draft = Draft {
            id: id.to_string(),
            service: service.to_string(),
            project: inner.scope.project().to_string(),
            triggers,
            mode: inner.strategy.mode(),
            started_at: first.at,
            run_started_at: Utc::now(),
            clock: Instant::now(),
            diagnosis: Vec::new(),
            llm: None,
            fallback_reason: None,
        };

        let states: Vec<ReplicaState> = match tools.observe().await {
            Ok(s) => s,
            Err(e) => {
                tools.note("observe", None, "error", json!({ "error": e.to_string() }));
                return draft.close(
                    tools,
                    Outcome::Failed,
                    None,
                    format!("could not observe the replicas: {e}"),
                );
            }
        };
        draft.diagnosis = states.iter().map(diagnose).collect();
        let down: Vec<String> = states
            .iter()
            .filter(|s| tools.should_heal(s))
            .map(|s| s.container.name.clone())
            .collect();
        // The outage began when the first down replica died, if that was before the trigger.
        if let Some(died) = states
            .iter()
            .filter(|s| tools.should_heal(s))
            .filter_map(|s| s.finished_at)
            .min()
        {
            draft.started_at = draft.started_at.min(died);
        }
        if down.is_empty() {
            let summary = format!(
                "all {} replicas of {service} are up; nothing to do",
                states.len()
            );
            return draft.close(tools, Outcome::NoAction, None, summary);
        }
        tracing::info!(down = ?down, "replicas need healing");

        if inner.ctx.dry_run {
            draft.mode = Mode::Runbook;
            for name in &down {
                let _ = tools.restart(name, Actor::Runbook).await;
            }
            let summary = format!("dry run: would restart {}", down.join(", "));
            return draft.close(tools, Outcome::DryRun, None, summary);
        }

        let brief = Brief {
            service: service.to_string(),
            triggers: draft.triggers.clone(),
            diagnosis: draft.diagnosis.clone(),
        };
        let report = inner.strategy.heal(&tools, &brief).await;
        draft.llm = report.llm;
        match report.failure {
            Some(reason) if draft.mode == Mode::Llm => {
                draft.fall_back(&tools, &brief, reason).await
            }
            Some(reason) => tools.note("runbook", None, "error", json!({ "error": reason })),
            None => {}
        }
        // Whatever the model says, replicas it left down (and not given up on) get the runbook.
        if draft.mode == Mode::Llm {
            if let Some(left) = self.still_down(&tools).await {
                draft
                    .fall_back(
                        &tools,
                        &brief,
                        format!("the model finished with replicas still down: {left}"),
                    )
                    .await;
            }
        }

        let gave_up = tools.gave_up();
        let restarted = tools.restarted();
        let must_serve: Vec<String> = down
            .iter()
            .filter(|n| !gave_up.contains(n))
            .cloned()
            .collect();
        let verification =
            verify(&tools, &restarted, &must_serve, inner.config.verify_timeout).await;
        tools.note(
            "verify",
            None,
            if verification.ok { "ok" } else { "error" },
            verification.detail,
        );
        if !gave_up.is_empty() {
            let summary = format!(
                "gave up on {} (restart budget spent: crash loop); restarted {}",
                gave_up.join(", "),
                names(&restarted)
            );
            draft.close(tools, Outcome::GaveUp, None, summary)
        } else if verification.ok {
            let summary = format!("restarted {} and verified recovery", names(&restarted));
            draft.close(tools, Outcome::Healed, Some(Utc::now()), summary)
        } else {
            let summary = format!("verification failed after restarting {}", names(&restarted));
            draft.close(tools, Outcome::Failed, None, summary)
        }
    }

    /// Names of replicas that still need healing and were not given up on, if any.
    async fn still_down(&self, tools: &Toolbox) -> Option<String> {
        let states = tools.observe().await.ok()?;
        let gave_up = tools.gave_up();
        let left: Vec<&str> = states
            .iter()
            .filter(|s| tools.should_heal(s) && !gave_up.contains(&s.container.name))
            .map(|s| s.container.name.as_str())
            .collect();
        (!left.is_empty()).then(|| left.join(", "))
    }
}

fn names(r: &[ContainerRef]) -> String {
    if r.is_empty() {
        "nothing".to_string()
    } else {
        r.iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
