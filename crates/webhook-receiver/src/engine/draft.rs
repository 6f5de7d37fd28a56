//! What a run or a look has learnt so far, and the incident it closes into.

use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::diagnosis::Observation;
use crate::incidents::{
    ActionLevel, ActionRecord, Escalation, FailureClass, Incident, LlmRecord, Mode, Outcome,
    ReplicaDiagnosis, TriggerRecord,
};

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
            recycle: None,
            summary,
        }
    }
}
