//! The incident record ([`Incident`]) and, in [`store`], its append-only JSON-lines log.

mod store;

pub use store::{IncidentStore, LogOptions, StoreError, KEEP_IN_MEMORY};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Alert,
    Event,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Runbook,
    Llm,
    Fallback,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Runbook => "runbook",
            Mode::Llm => "llm",
            Mode::Fallback => "fallback",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Healed,
    NoAction,
    GaveUp,
    Failed,
    DryRun,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Healed => "healed",
            Outcome::NoAction => "no_action",
            Outcome::GaveUp => "gave_up",
            Outcome::Failed => "failed",
            Outcome::DryRun => "dry_run",
        }
    }
}

/// Why a run happened. Alert text is untrusted and stored truncated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRecord {
    pub kind: TriggerKind,
    /// Alert name, or the event (`die`, `oom`, `unhealthy`).
    pub name: String,
    /// The alert's startsAt or the event's time.
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// One replica as the run found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaDiagnosis {
    pub name: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    pub restart_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    pub needs_healing: bool,
}

/// One step of the timeline: a tool call, a restart, a verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub at: DateTime<Utc>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
    /// `ok`, `error`, `denied`, `skipped`...
    pub result: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
    /// Who asked: `runbook`, `llm` or `agent` (verification and bookkeeping).
    pub by: String,
}

/// What the model did in an LLM-driven run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmRecord {
    pub provider: String,
    pub model: String,
    pub turns: u32,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// Sum of the model's own request latency, so the agent's added time can be told apart.
    pub model_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// How the loop ended (`completed`, `failed: ...`, `turn_budget`, ...).
    pub ended: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub service: String,
    pub project: String,
    /// The kind of the first trigger of this run.
    pub trigger: TriggerKind,
    pub triggers: Vec<TriggerRecord>,
    pub mode: Mode,
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mttr_seconds: Option<f64>,
    /// When the agent began and finished this run (its own share of the time to recovery).
    pub run_started_at: DateTime<Utc>,
    pub run_seconds: f64,
    pub diagnosis: Vec<ReplicaDiagnosis>,
    pub timeline: Vec<ActionRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// A one-line human summary of the outcome.
    pub summary: String,
}
