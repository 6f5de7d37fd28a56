//! One healing run of one service, from live state to a recorded incident.

use std::time::Instant;

use chrono::Utc;
use serde_json::json;
use tracing::Instrument;

use super::strategy::{Brief, Runbook, Strategy};
use super::verify::verify;
use super::Engine;
use crate::incidents::{Incident, LlmRecord, Mode, Outcome, TriggerRecord};
use crate::runtime::ReplicaState;
use crate::tools::{diagnose, Actor, Toolbox};

impl Engine {
    pub(super) async fn run(
        &self,
        id: &str,
        service: &str,
        triggers: Vec<TriggerRecord>,
    ) -> Incident {
        let span = tracing::info_span!("incident", id = %id, service = %service);
        self.run_inner(id, service, triggers).instrument(span).await
    }

    async fn run_inner(&self, id: &str, service: &str, triggers: Vec<TriggerRecord>) -> Incident {
        let inner = &self.inner;
        let run_started_at = Utc::now();
        let clock = Instant::now();
        let tools = Toolbox::new(inner.ctx.clone(), inner.scope.project(), service);
        let first_trigger = triggers
            .iter()
            .min_by_key(|t| t.at)
            .cloned()
            .expect("a run has a trigger");
        tracing::info!(trigger = ?first_trigger.kind, name = %first_trigger.name, coalesced = triggers.len(), "healing run started");

        let mut mode = inner.strategy.mode();
        let mut llm: Option<LlmRecord> = None;
        let mut fallback_reason: Option<String> = None;

        let states: Vec<ReplicaState> = match tools.observe().await {
            Ok(s) => s,
            Err(e) => {
                tools.note("observe", None, "error", json!({ "error": e.to_string() }));
                let summary = format!("could not observe the replicas: {e}");
                tracing::warn!(%summary, "healing run failed");
                return self.incident(
                    id,
                    service,
                    &triggers,
                    mode,
                    Outcome::Failed,
                    run_started_at,
                    None,
                    &[],
                    tools,
                    llm,
                    None,
                    summary,
                    clock,
                );
            }
        };
        let diagnosis: Vec<_> = states.iter().map(diagnose).collect();
        let down: Vec<&ReplicaState> = states.iter().filter(|s| s.needs_healing()).collect();
        // The outage began when the first down replica died, or when the trigger says, whichever is earlier.
        let died_at = down.iter().filter_map(|s| s.finished_at).min();
        let started_at = died_at.map_or(first_trigger.at, |d| d.min(first_trigger.at));

        if down.is_empty() {
            let summary = format!(
                "all {} replicas of {service} are up; nothing to do",
                states.len()
            );
            tracing::info!(%summary, "no action");
            return self.incident(
                id,
                service,
                &triggers,
                mode,
                Outcome::NoAction,
                started_at,
                None,
                &diagnosis,
                tools,
                llm,
                None,
                summary,
                clock,
            );
        }
        let down_names: Vec<String> = down.iter().map(|s| s.container.name.clone()).collect();
        tracing::info!(down = ?down_names, "replicas need healing");

        if inner.ctx.dry_run {
            mode = Mode::Runbook;
            for name in &down_names {
                let _ = tools.restart(name, Actor::Runbook).await;
            }
            let summary = format!("dry run: would restart {}", down_names.join(", "));
            return self.incident(
                id,
                service,
                &triggers,
                mode,
                Outcome::DryRun,
                started_at,
                None,
                &diagnosis,
                tools,
                llm,
                None,
                summary,
                clock,
            );
        }

        let brief = Brief {
            service: service.to_string(),
            triggers: triggers.clone(),
            diagnosis: diagnosis.clone(),
        };
        let report = inner.strategy.heal(&tools, &brief).await;
        llm = report.llm;
        if let Some(reason) = report.failure {
            if mode == Mode::Llm {
                tracing::warn!(%reason, "model run failed; the runbook finishes the job");
                mode = Mode::Fallback;
                fallback_reason = Some(reason);
                Runbook.heal(&tools, &brief).await;
            } else {
                tools.note("runbook", None, "error", json!({ "error": reason }));
            }
        }
        // Whatever the strategy claims, replicas still down (and not given up on) get the runbook.
        if mode == Mode::Llm {
            if let Ok(now) = tools.observe().await {
                let gave_up = tools.gave_up();
                let left: Vec<String> = now
                    .iter()
                    .filter(|s| s.needs_healing() && !gave_up.contains(&s.container.name))
                    .map(|s| s.container.name.clone())
                    .collect();
                if !left.is_empty() {
                    let reason = format!(
                        "the model finished with replicas still down: {}",
                        left.join(", ")
                    );
                    tracing::warn!(%reason, "the runbook finishes the job");
                    mode = Mode::Fallback;
                    fallback_reason = Some(reason);
                    Runbook.heal(&tools, &brief).await;
                }
            }
        }

        let gave_up = tools.gave_up();
        let restarted = tools.restarted();
        let must_serve: Vec<String> = down_names
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
        let (outcome, resolved_at, summary) = if !gave_up.is_empty() {
            (
                Outcome::GaveUp,
                None,
                format!(
                    "gave up on {} (restart budget spent: crash loop); restarted {}",
                    gave_up.join(", "),
                    names(&restarted)
                ),
            )
        } else if verification.ok {
            (
                Outcome::Healed,
                Some(Utc::now()),
                format!("restarted {} and verified recovery", names(&restarted)),
            )
        } else {
            (
                Outcome::Failed,
                None,
                format!("verification failed after restarting {}", names(&restarted)),
            )
        };
        tracing::info!(outcome = outcome.as_str(), mode = mode.as_str(), %summary, "healing run finished");
        let mut incident = self.incident(
            id,
            service,
            &triggers,
            mode,
            outcome,
            started_at,
            resolved_at,
            &diagnosis,
            tools,
            llm,
            fallback_reason,
            summary,
            clock,
        );
        incident.run_started_at = run_started_at;
        incident
    }

    #[allow(clippy::too_many_arguments)]
    fn incident(
        &self,
        id: &str,
        service: &str,
        triggers: &[TriggerRecord],
        mode: Mode,
        outcome: Outcome,
        started_at: chrono::DateTime<Utc>,
        resolved_at: Option<chrono::DateTime<Utc>>,
        diagnosis: &[crate::incidents::ReplicaDiagnosis],
        tools: Toolbox,
        llm: Option<LlmRecord>,
        fallback_reason: Option<String>,
        summary: String,
        clock: Instant,
    ) -> Incident {
        let mut triggers = triggers.to_vec();
        triggers.sort_by_key(|t| t.at);
        Incident {
            id: id.to_string(),
            service: service.to_string(),
            project: self.inner.scope.project().to_string(),
            trigger: triggers[0].kind,
            triggers,
            mode,
            outcome,
            started_at,
            resolved_at,
            mttr_seconds: resolved_at.map(|r| (r - started_at).num_milliseconds() as f64 / 1000.0),
            run_started_at: Utc::now()
                - chrono::Duration::from_std(clock.elapsed()).unwrap_or_default(),
            run_seconds: clock.elapsed().as_secs_f64(),
            diagnosis: diagnosis.to_vec(),
            timeline: tools.take_timeline(),
            llm,
            fallback_reason,
            summary,
        }
    }
}

fn names(r: &[crate::runtime::ContainerRef]) -> String {
    if r.is_empty() {
        "nothing".to_string()
    } else {
        r.iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
