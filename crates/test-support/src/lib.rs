//! Test doubles for the agent's tests, kept out of the shipped library: an in-memory container
//! runtime ([`memory::MemoryRuntime`], also a [`webhook_receiver::probe::Prober`]) and sample
//! records. A dev-dependency of `webhook-receiver` only.

pub mod memory;

pub use memory::{Behaviour, MemoryRuntime, Op};

use chrono::Utc;
use webhook_receiver::incidents::{
    ActionLevel, FailureClass, Incident, Mode, Outcome, TriggerKind,
};

/// A healed incident with every field set.
pub fn sample_incident(id: &str) -> Incident {
    let now = Utc::now();
    Incident {
        id: id.into(),
        service: "webapp".into(),
        project: "p".into(),
        trigger: TriggerKind::Alert,
        triggers: vec![],
        mode: Mode::Runbook,
        outcome: Outcome::Healed,
        class: FailureClass::OomKilled,
        action_level: ActionLevel::Auto,
        started_at: now,
        resolved_at: Some(now),
        mttr_seconds: Some(1.5),
        run_started_at: now,
        run_seconds: 0.5,
        diagnosis: vec![],
        timeline: vec![],
        llm: None,
        fallback_reason: None,
        escalation: None,
        notifications: vec![],
        scope_note: None,
        recycle: None,
        summary: "ok".into(),
    }
}
