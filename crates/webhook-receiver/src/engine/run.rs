//! One healing run: the strategy acts on the claimed replicas through the tools, the runbook
//! finishes what the model did not, verification by code decides, one incident records it.
//! The run is supervised: a panic or a shutdown still leaves an incident.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;

pub(super) use super::draft::Draft;
use super::strategy::{Brief, Runbook, Strategy};
use super::verify::verify;
use super::Engine;
use crate::diagnosis::Observation;
use crate::incidents::{
    ActionKind, Escalation, EscalationReason, Incident, Mode, Outcome, ReplicaDiagnosis,
    TriggerRecord,
};
use crate::policy::main_class;
use crate::runtime::ContainerRef;
use crate::tools::{Acted, RunRecord, Toolbox};

/// A run the plan decided on: its draft, what it observed, and the replicas it claimed.
pub(super) struct RunSpec {
    pub draft: Draft,
    pub observation: Observation,
    pub claimed: Vec<ContainerRef>,
    /// Only quiet tries at replicas given up on: the runbook acts, and unless they serve again
    /// nothing is recorded (people were told already).
    pub quiet: bool,
}

/// What the supervisor keeps of a run, to record it whatever becomes of the run's task.
struct Shared {
    draft: Mutex<Draft>,
    record: Arc<RunRecord>,
    observation: Observation,
    claimed: Vec<ContainerRef>,
    quiet: bool,
}

impl Shared {
    fn claims(&self, id: &str) -> bool {
        self.claimed.iter().any(|c| c.id == id)
    }

    fn claimed_names(&self) -> Vec<String> {
        self.claimed.iter().map(|c| c.name.clone()).collect()
    }

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
                .filter(|o| self.claims(&o.state.container.id))
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
            quiet: spec.quiet,
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
        let (mut incident, requeue) = match finished {
            Some(Ok(done)) => done,
            Some(Err(e)) => {
                let what = if e.is_panic() {
                    crate::supervise::panic_message(e.into_panic())
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
                    crate::text::bounded(&what, 200)
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
            for c in &shared.claimed {
                if state.claims.get(&c.id) == Some(&id) {
                    state.claims.remove(&c.id);
                }
            }
            if let Some(slot) = state.services.get_mut(&service) {
                slot.running = slot.running.saturating_sub(1);
            }
            let joined = state.joined.remove(&id).unwrap_or_default();
            for t in joined {
                if !incident.triggers.iter().any(|x| same_trigger(x, &t)) {
                    incident.triggers.push(t);
                }
            }
        }
        if incident.outcome == Outcome::Healed {
            self.note_serving(&service, &shared.claimed_names());
        }
        let acted = !shared.record.acted().is_empty();
        // A dry run changes nothing: the same one again (a repeated alert) is not recorded again.
        if incident.outcome == Outcome::DryRun
            && !self.first_record_of(&service, super::plan::dry_run_digest(&shared.observation))
        {
            return;
        }
        if shared.quiet && incident.outcome != Outcome::Healed {
            // A quiet try that did not help: people were told already. The next look gives up
            // on the replica again, quietly, and schedules the next try.
            tracing::info!(id = %id, outcome = incident.outcome.as_str(), "quiet try at a replica given up on did not help");
            self.requeue(&service);
            return;
        }
        self.record(incident, acted).await;
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
        let claimed = shared.claimed_names();
        let started_at = outage_start(&shared.observation, &claimed, &draft.triggers)
            .unwrap_or(draft.started_at);
        shared.set(|d| d.started_at = started_at);
        let claimed_diag: Vec<&ReplicaDiagnosis> = shared
            .observation
            .replicas
            .iter()
            .filter(|o| shared.claims(&o.state.container.id))
            .map(|o| &o.diagnosis)
            .collect();
        let class = main_class(claimed_diag.iter().copied());
        tracing::info!(trigger = draft.triggers.first().map(|t| t.kind.as_str()).unwrap_or(""), class = class.as_str(), claimed = ?claimed, quiet = shared.quiet, "healing run started");

        let brief = Brief {
            service: draft.service.clone(),
            triggers: draft.triggers.clone(),
            diagnosis: shared.observation.diagnoses(),
            claimed: claimed.clone(),
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

        // A quiet try at a replica given up on costs no model call.
        let strategy: &dyn Strategy = if shared.quiet {
            shared.set(|d| d.mode = Mode::Runbook);
            &Runbook
        } else {
            inner.strategy.as_ref()
        };
        let report = strategy.heal(&tools, &brief).await;
        shared.set(|d| d.llm = report.llm.clone());
        let is_llm = strategy.mode() == Mode::Llm;
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
        let must_serve: Vec<String> = claimed
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
            let escalation = self.give_up(&draft.service, &gave_up, now);
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
            let escalation = self.recurrence(&draft.service, &shared.observation, record);
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

impl Engine {
    /// The recurrence escalation of a run whose actions made one: the replicas keep being
    /// restarted (they served), and people get the numbers and the likely cause.
    fn recurrence(
        &self,
        service: &str,
        obs: &Observation,
        record: &RunRecord,
    ) -> Option<Escalation> {
        let recurrences = record.recurrences();
        let first = recurrences.first()?;
        let history = self.inner.ctx.ledger.history();
        let now = self.inner.ctx.clock.now();
        let figures = history.figures(service, obs.replicas.len(), now);
        let mut detail: Vec<String> = recurrences
            .iter()
            .map(|r| {
                format!(
                    "{} was healed for {} {} times within {} s",
                    r.name,
                    r.class.as_str(),
                    r.count,
                    history.policy().window.as_secs()
                )
            })
            .collect();
        if let Some(f) = &figures {
            detail.push(format!(
                "{service}: {} deaths in {:.0} s ({} a minute), lives of {} s on average{}; likely cause: {}. The agent keeps restarting them (they served); restarts do not remove the cause",
                f.deaths,
                f.window_seconds,
                f.deaths_per_minute,
                f.mean_life_seconds,
                f.memory_limit_bytes
                    .filter(|_| f.oom_kills > 0)
                    .map(|m| format!(", {} of them OOM kills at {} MiB", f.oom_kills, m >> 20))
                    .unwrap_or_default(),
                f.likely_cause
            ));
        }
        Some(Escalation {
            reason: EscalationReason::Recurrence,
            detail: detail.join("\n"),
            replicas: recurrences.iter().map(|r| r.name.clone()).collect(),
            count: first.count,
            figures,
        })
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

/// The same trigger seen twice (a repeated alert, a duplicate event).
pub(super) fn same_trigger(a: &TriggerRecord, b: &TriggerRecord) -> bool {
    a.kind == b.kind && a.name == b.name && a.container == b.container
}
