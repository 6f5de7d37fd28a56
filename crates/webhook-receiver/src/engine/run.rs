//! One healing run: the strategy acts on the claimed replicas through the tools, the runbook
//! finishes what the model did not, verification by code decides, one incident records it.
//! The run is supervised: a panic or a shutdown still leaves an incident.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;

use super::strategy::{Brief, Runbook, Strategy};
use super::verify::verify;
use super::Engine;
use crate::diagnosis::Observation;
use crate::incidents::{
    ActionKind, ActionLevel, ActionRecord, Escalation, EscalationReason, FailureClass, Incident,
    LlmRecord, Mode, Outcome, ReplicaDiagnosis, TriggerRecord,
};
use crate::policy::main_class;
use crate::tools::{Acted, RunRecord, Toolbox};

/// What a run or a look has learnt so far; [`Draft::close`] turns it into the incident.
#[derive(Clone)]
pub(super) struct Draft {
    pub id: String,
    pub service: String,
    pub project: String,
    pub triggers: Vec<TriggerRecord>,
    pub mode: Mode,
    pub level: ActionLevel,
    /// When the outage began: the first trigger, until the replicas tell better.
    pub started_at: DateTime<Utc>,
    pub run_started_at: DateTime<Utc>,
    pub clock: Instant,
    pub diagnosis: Vec<ReplicaDiagnosis>,
    pub llm: Option<LlmRecord>,
    pub fallback_reason: Option<String>,
}

impl Draft {
    pub fn new(
        id: &str,
        service: &str,
        project: &str,
        triggers: Vec<TriggerRecord>,
        mode: Mode,
        now: DateTime<Utc>,
    ) -> Self {
        Draft {
            id: id.to_string(),
            service: service.to_string(),
            project: project.to_string(),
            started_at: triggers.first().map(|t| t.at.min(now)).unwrap_or(now),
            triggers,
            mode,
            level: ActionLevel::Auto,
            run_started_at: now,
            clock: Instant::now(),
            diagnosis: Vec::new(),
            llm: None,
            fallback_reason: None,
        }
    }

    pub fn observed(&mut self, obs: &Observation) {
        self.diagnosis = obs.diagnoses();
        self.level = obs.level;
    }

    #[allow(clippy::too_many_arguments)]
    pub fn close(
        self,
        outcome: Outcome,
        class: FailureClass,
        resolved_at: Option<DateTime<Utc>>,
        summary: String,
        timeline: Vec<ActionRecord>,
        escalation: Option<Escalation>,
        scope_note: Option<String>,
    ) -> Incident {
        let trigger = self
            .triggers
            .first()
            .map(|t| t.kind)
            .unwrap_or(crate::incidents::TriggerKind::Reconcile);
        Incident {
            id: self.id,
            service: self.service,
            project: self.project,
            trigger,
            triggers: self.triggers,
            mode: self.mode,
            outcome,
            class,
            action_level: self.level,
            started_at: self.started_at,
            resolved_at,
            mttr_seconds: resolved_at
                .map(|r| (r - self.started_at).num_milliseconds().max(0) as f64 / 1000.0),
            run_started_at: self.run_started_at,
            run_seconds: self.clock.elapsed().as_secs_f64(),
            diagnosis: self.diagnosis,
            timeline,
            llm: self.llm,
            fallback_reason: self.fallback_reason,
            escalation,
            notifications: Vec::new(),
            scope_note,
            summary,
        }
    }
}

/// A run the plan decided on: its draft, what it observed, and the replicas it claimed.
pub(super) struct RunSpec {
    pub draft: Draft,
    pub observation: Observation,
    pub claimed: Vec<String>,
}

/// What the supervisor keeps of a run, to record it whatever becomes of the run's task.
struct Shared {
    draft: Mutex<Draft>,
    record: Arc<RunRecord>,
    observation: Observation,
    claimed: Vec<String>,
}

impl Shared {
    fn draft(&self) -> Draft {
        self.draft.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, f: impl FnOnce(&mut Draft)) {
        f(&mut self.draft.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The incident of a run that did not finish on its own (panic, shutdown).
    fn cut_short(&self, outcome: Outcome, summary: String) -> Incident {
        let class = main_class(
            self.observation
                .replicas
                .iter()
                .filter(|o| self.claimed.contains(&o.diagnosis.name))
                .map(|o| &o.diagnosis),
        );
        self.draft().close(
            outcome,
            class,
            None,
            summary,
            self.record.timeline(),
            None,
            None,
        )
    }
}

impl Engine {
    pub(super) fn spawn_run(&self, spec: RunSpec) {
        let shared = Arc::new(Shared {
            draft: Mutex::new(spec.draft),
            record: Arc::new(RunRecord::default()),
            observation: spec.observation,
            claimed: spec.claimed,
        });
        let engine = self.clone();
        self.inner
            .tasks
            .spawn(async move { engine.supervise(shared).await });
    }

    /// Runs one healing run in a task of its own and records it, whatever happens to it.
    async fn supervise(self, shared: Arc<Shared>) {
        let (id, service) = {
            let d = shared.draft();
            (d.id, d.service)
        };
        let span = tracing::info_span!("incident", id = %id, service = %service);
        let mut work = tokio::spawn(self.clone().execute(shared.clone()).instrument(span));
        let finished = tokio::select! {
            r = &mut work => Some(r),
            _ = self.inner.abort.cancelled() => {
                work.abort();
                let _ = work.await;
                None
            }
        };
        let (incident, requeue) = match finished {
            Some(Ok(done)) => done,
            Some(Err(e)) => {
                let what = if e.is_panic() {
                    let payload = e.into_panic();
                    payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_string())
                } else {
                    "the run's task was cancelled".to_string()
                };
                tracing::error!(id = %id, service = %service, error = %what, "healing run failed inside the agent; the service is requeued");
                self.inner
                    .metrics
                    .run_panics
                    .with_label_values(&[service.as_str()])
                    .inc();
                let summary = format!(
                    "internal error: the run ended abnormally ({}); requeued",
                    crate::tools::guard_bounded(&what, 200)
                );
                (shared.cut_short(Outcome::Failed, summary), true)
            }
            None => {
                let summary = "interrupted: the agent shut down during the run; the next start reconciles from live state".to_string();
                (shared.cut_short(Outcome::Interrupted, summary), false)
            }
        };
        {
            let mut state = self.state();
            for name in &shared.claimed {
                if state.claims.get(name) == Some(&id) {
                    state.claims.remove(name);
                }
            }
            if let Some(slot) = state.services.get_mut(&service) {
                slot.running = slot.running.saturating_sub(1);
            }
        }
        self.record(incident).await;
        if requeue {
            self.requeue(&service);
        } else {
            self.settle_backoff(&service);
        }
    }

    /// The run itself. Returns its incident and whether the service must be looked at again.
    async fn execute(self, shared: Arc<Shared>) -> (Incident, bool) {
        let inner = &self.inner;
        let ctx = inner.ctx.clone();
        let draft = shared.draft();
        let tools = Toolbox::new(
            ctx.clone(),
            &draft.project,
            &draft.service,
            shared.claimed.clone(),
            shared.record.clone(),
            &shared.observation,
        );
        let started_at = outage_start(&shared.observation, &shared.claimed, &draft.triggers)
            .unwrap_or(draft.started_at);
        shared.set(|d| d.started_at = started_at);
        let claimed_diag: Vec<&ReplicaDiagnosis> = shared
            .observation
            .replicas
            .iter()
            .filter(|o| shared.claimed.contains(&o.diagnosis.name))
            .map(|o| &o.diagnosis)
            .collect();
        let class = main_class(claimed_diag.iter().copied());
        tracing::info!(trigger = draft.triggers.first().map(|t| t.kind.as_str()).unwrap_or(""), class = class.as_str(), claimed = ?shared.claimed, "healing run started");

        let brief = Brief {
            service: draft.service.clone(),
            triggers: draft.triggers.clone(),
            diagnosis: shared.observation.diagnoses(),
            claimed: shared.claimed.clone(),
        };

        if ctx.dry_run {
            shared.set(|d| d.mode = Mode::Runbook);
            Runbook.heal(&tools, &brief).await;
            let would: Vec<String> = claimed_diag
                .iter()
                .map(|d| format!("{} {} ({})", d.action.as_str(), d.name, d.class.as_str()))
                .collect();
            let incident = shared.draft().close(
                Outcome::DryRun,
                class,
                None,
                format!("dry run: would {}", would.join(", ")),
                shared.record.timeline(),
                None,
                None,
            );
            return (incident, false);
        }

        let report = inner.strategy.heal(&tools, &brief).await;
        shared.set(|d| d.llm = report.llm.clone());
        let is_llm = inner.strategy.mode() == Mode::Llm;
        match report.failure {
            Some(reason) if is_llm => self.fall_back(&shared, &tools, &brief, reason).await,
            Some(reason) => tools.note("runbook", None, "error", json!({ "error": reason })),
            None => {}
        }
        // Whatever the model says, claimed replicas it left down get the runbook.
        if is_llm && shared.draft().mode == Mode::Llm {
            if let Some(left) = still_down(&tools).await {
                self.fall_back(
                    &shared,
                    &tools,
                    &brief,
                    format!("the model finished with replicas still down: {left}"),
                )
                .await;
            }
        }

        let record = &shared.record;
        let gave_up = record.gave_up();
        let acted = record.acted();
        let must_serve: Vec<String> = shared
            .claimed
            .iter()
            .filter(|n| !gave_up.iter().any(|g| &g.name == *n))
            .cloned()
            .collect();
        let verification = verify(&tools, &acted, &must_serve, ctx.verify_timeout).await;
        tools.note(
            "verify",
            None,
            if verification.ok { "ok" } else { "error" },
            verification.detail.clone(),
        );
        let now = ctx.clock.now();
        let done = describe(&acted);
        let (outcome, resolved_at, summary, escalation) = if !gave_up.is_empty() {
            let replicas: Vec<String> = gave_up.iter().map(|g| g.name.clone()).collect();
            for r in &replicas {
                ctx.history.mark_escalated(r, now);
            }
            let escalation = Escalation {
                reason: gave_up[0].reason,
                detail: gave_up
                    .iter()
                    .map(|g| g.detail.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
                count: gave_up[0].count.max(1),
                replicas: replicas.clone(),
            };
            let summary = format!(
                "gave up on {} ({}); {done}",
                replicas.join(", "),
                gave_up[0].reason.as_str()
            );
            (Outcome::GaveUp, None, summary, Some(escalation))
        } else if verification.ok && acted.is_empty() {
            (
                Outcome::NoAction,
                None,
                "the replicas recovered before the agent acted; nothing touched".to_string(),
                None,
            )
        } else if verification.ok {
            let recurrences = record.recurrences();
            let escalation = recurrences.first().map(|r| Escalation {
                reason: EscalationReason::Recurrence,
                detail: recurrences
                    .iter()
                    .map(|r| {
                        format!(
                            "{} was healed for {} {} times within {}s: restarts do not remove the cause",
                            r.name,
                            r.class.as_str(),
                            r.count,
                            ctx.history.policy().window.as_secs()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                replicas: recurrences.iter().map(|r| r.name.clone()).collect(),
                count: r.count,
            });
            (
                Outcome::Healed,
                Some(now),
                format!("{done} and verified recovery"),
                escalation,
            )
        } else {
            let why = verification
                .detail
                .get("reason")
                .and_then(|v| v.as_str())
                .unwrap_or("verification failed")
                .to_string();
            (
                Outcome::Failed,
                None,
                format!("{done}; {why}; requeued"),
                None,
            )
        };
        let requeue = outcome == Outcome::Failed;
        let incident = shared.draft().close(
            outcome,
            class,
            resolved_at,
            summary,
            record.timeline(),
            escalation,
            None,
        );
        (incident, requeue)
    }

    /// The runbook takes over from a model that failed or left replicas down.
    async fn fall_back(&self, shared: &Shared, tools: &Toolbox, brief: &Brief, reason: String) {
        tracing::warn!(%reason, "the runbook finishes the job");
        shared.set(|d| {
            d.mode = Mode::Fallback;
            d.fallback_reason = Some(reason);
        });
        Runbook.heal(tools, brief).await;
    }
}

/// Claimed replicas that still need an action on live state and were not given up on.
async fn still_down(tools: &Toolbox) -> Option<String> {
    let depth = crate::diagnosis::Depth {
        probe: true,
        ..crate::diagnosis::Depth::STATE_ONLY
    };
    let obs = tools.observe(depth).await.ok()?;
    let gave_up = tools.record().gave_up();
    let left: Vec<&str> = obs
        .replicas
        .iter()
        .filter(|o| tools.claimed().contains(&o.diagnosis.name))
        .filter(|o| o.diagnosis.action != ActionKind::None)
        .filter(|o| !gave_up.iter().any(|g| g.name == o.diagnosis.name))
        .map(|o| o.diagnosis.name.as_str())
        .collect();
    (!left.is_empty()).then(|| left.join(", "))
}

/// When the outage the run heals began: the death of the first claimed replica that exited, or,
/// for a replica that runs (hung, unhealthy), the first trigger within its current life. An
/// older alert that is still firing never stretches a new outage.
fn outage_start(
    obs: &Observation,
    claimed: &[String],
    triggers: &[TriggerRecord],
) -> Option<DateTime<Utc>> {
    let first_trigger = triggers.iter().map(|t| t.at).min();
    obs.replicas
        .iter()
        .filter(|o| claimed.contains(&o.diagnosis.name))
        .filter_map(|o| {
            if o.state.is_exited() {
                o.state.finished_at.or(first_trigger)
            } else {
                let t = first_trigger?;
                Some(match o.state.started_at {
                    Some(s) => t.max(s),
                    None => t,
                })
            }
        })
        .min()
}

/// "started a (oom_killed), unpaused b (hung)" or "nothing was done".
fn describe(acted: &[Acted]) -> String {
    if acted.is_empty() {
        return "nothing was done".to_string();
    }
    acted
        .iter()
        .map(|a| {
            let verb = match a.action {
                ActionKind::Start => "started",
                ActionKind::Restart => "restarted",
                ActionKind::Unpause => "unpaused",
                ActionKind::None => "left",
            };
            format!("{verb} {} ({})", a.container.name, a.class.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ")
}
