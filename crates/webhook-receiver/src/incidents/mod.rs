//! The incident record ([`Incident`]) and, in [`store`], its append-only JSON-lines log.

mod store;

pub use store::{IncidentStore, LogOptions, StoreError, KEEP_IN_MEMORY, KEEP_NOISE};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// A firing Alertmanager alert.
    Alert,
    /// A Docker event (die, oom, unhealthy, pause).
    Event,
    /// The agent's periodic resync, or a re-list after the event stream reconnected.
    Reconcile,
    /// A retry of a run that failed (or of a replica still down).
    Requeue,
    /// The reconcile of every service when the agent starts.
    Startup,
    /// An operator's `POST /reset` or `POST /recycle/{service}`.
    Operator,
    /// A replica's memory nearing its limit (preventive recycling).
    Memory,
}

impl TriggerKind {
    /// Something outside the agent says there is a problem: worth a record even when the agent
    /// finds nothing to do (its own resyncs are not).
    pub fn is_external(self) -> bool {
        matches!(self, TriggerKind::Alert | TriggerKind::Event)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Alert => "alert",
            TriggerKind::Event => "event",
            TriggerKind::Reconcile => "reconcile",
            TriggerKind::Requeue => "requeue",
            TriggerKind::Startup => "startup",
            TriggerKind::Operator => "operator",
            TriggerKind::Memory => "memory",
        }
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acted, and verification passed.
    Healed,
    /// Nothing to do (or nothing this agent may do): recorded, nothing touched.
    NoAction,
    /// The agent stopped acting on a replica (restart budget spent, crash on start): escalated.
    GaveUp,
    /// Acted (or tried to) and verification failed; the service is requeued.
    Failed,
    /// `DRY_RUN`: what would have been done.
    DryRun,
    /// The agent shut down in the middle of the run.
    Interrupted,
    /// The service's action level is `notify`: diagnosed and notified, not touched.
    Notified,
    /// A serving replica replaced before it failed (its memory near the limit, or an operator's
    /// rolling restart): drained, started, healthy again. Not a repair.
    Recycled,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Healed,
        Outcome::NoAction,
        Outcome::GaveUp,
        Outcome::Failed,
        Outcome::DryRun,
        Outcome::Interrupted,
        Outcome::Notified,
        Outcome::Recycled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Healed => "healed",
            Outcome::NoAction => "no_action",
            Outcome::GaveUp => "gave_up",
            Outcome::Failed => "failed",
            Outcome::DryRun => "dry_run",
            Outcome::Interrupted => "interrupted",
            Outcome::Notified => "notified",
            Outcome::Recycled => "recycled",
        }
    }
}

/// What kind of failure a replica (or an alert) shows: decided by code from Docker's state, the
/// agent's own probe and the replica's history, before anything acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Exited with `OOMKilled` set.
    OomKilled,
    /// Exited by a signal (137 from `docker kill`, ...) without an OOM kill.
    Killed,
    /// Exited with an error after it had served (been healthy, or run stably).
    Crashed,
    /// Exited with an error before it ever served: a restart will not fix it for long.
    CrashedOnStart,
    /// Paused, or running while it answers no request (the agent's own probe fails).
    Hung,
    /// Running, and Docker's healthcheck says unhealthy.
    Unhealthy,
    /// Exited because it was asked to (`docker stop`, `docker compose stop`, exit 0/143).
    StoppedOnPurpose,
    /// Running and serving, starting, or restarting: nothing is wrong with it.
    #[default]
    NotDown,
    /// Not this agent's to heal: another service or project, or a failure in front of the
    /// replicas (the load balancer).
    OutOfScope,
}

impl FailureClass {
    pub const ALL: [FailureClass; 9] = [
        FailureClass::OomKilled,
        FailureClass::Killed,
        FailureClass::Crashed,
        FailureClass::CrashedOnStart,
        FailureClass::Hung,
        FailureClass::Unhealthy,
        FailureClass::StoppedOnPurpose,
        FailureClass::NotDown,
        FailureClass::OutOfScope,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::OomKilled => "oom_killed",
            FailureClass::Killed => "killed",
            FailureClass::Crashed => "crashed",
            FailureClass::CrashedOnStart => "crashed_on_start",
            FailureClass::Hung => "hung",
            FailureClass::Unhealthy => "unhealthy",
            FailureClass::StoppedOnPurpose => "stopped_on_purpose",
            FailureClass::NotDown => "not_down",
            FailureClass::OutOfScope => "out_of_scope",
        }
    }
}

/// The one action a class allows on a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Start an exited replica.
    Start,
    /// Restart a running one (stop, then start).
    Restart,
    /// Unpause a paused one.
    Unpause,
    #[default]
    None,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Start => "start",
            ActionKind::Restart => "restart",
            ActionKind::Unpause => "unpause",
            ActionKind::None => "none",
        }
    }
}

/// What the agent may do for a service: the `healstack.action` label on its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionLevel {
    /// Diagnose and act (the default).
    #[default]
    Auto,
    /// Diagnose and notify; never act.
    Notify,
    /// Leave the service alone entirely.
    Off,
}

impl ActionLevel {
    pub const LABEL: &'static str = "healstack.action";

    /// The level a label value asks for; unknown values are refused (the caller warns and uses
    /// the safest level that still tells a human: `notify`).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(ActionLevel::Auto),
            "notify" => Some(ActionLevel::Notify),
            "off" | "none" => Some(ActionLevel::Off),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ActionLevel::Auto => "auto",
            ActionLevel::Notify => "notify",
            ActionLevel::Off => "off",
        }
    }
}

/// Why a run happened. Alert text is untrusted and stored truncated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRecord {
    pub kind: TriggerKind,
    /// Alert name, or the event (`die`, `oom`, `unhealthy`, `pause`), or why the agent looked.
    pub name: String,
    /// The alert's startsAt or the event's time.
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl TriggerRecord {
    /// A trigger of the agent's own (resync, retry, start-up, operator).
    pub fn internal(kind: TriggerKind, name: &str, at: DateTime<Utc>) -> Self {
        TriggerRecord {
            kind,
            name: name.to_string(),
            at,
            container: None,
            summary: None,
        }
    }
}

/// The agent's own HTTP check of a replica or of the service URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// No answer in time (as opposed to a refusal or an error status): what a hang looks like.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// One replica as the run found it: the evidence, the class, and the action the class allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaDiagnosis {
    pub name: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    pub restart_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// How long its last life lasted (until now while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<f64>,
    /// How long of that it was healthy (from its first passing healthcheck).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_seconds: Option<f64>,
    /// It served in that life: passed a healthcheck (or, without one, ran for the stable
    /// period). A replica that served is never given up on.
    #[serde(default)]
    pub served: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// The class allows an action on it.
    pub needs_healing: bool,
    #[serde(default)]
    pub class: FailureClass,
    #[serde(default)]
    pub action: ActionKind,
    /// Why this class, in a sentence (what the evidence says).
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeRecord>,
    /// The last failing healthcheck output, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_output: Option<String>,
    /// The last log lines of a replica that is down (untrusted text, bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs_tail: Vec<String>,
}

/// Why the agent asks a human to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationReason {
    /// The same replica failed the same way `ESCALATE_AFTER` times within `ESCALATE_WINDOW`.
    Recurrence,
    /// The replica crashes on every start: restarting it is not the fix.
    CrashOnStart,
    /// The replica never became healthy after the agent's restarts (its healthcheck never
    /// passes, or it hangs before serving).
    NeverHealthy,
    /// Docker refused the action (a port taken, a missing bind source, a proxy that forbids it).
    Refused,
    /// The replica's restart budget was spent. Agents before the floor invariant (issue 15) gave
    /// up on that; kept so that their incident logs still read.
    BudgetSpent,
    /// The failure is outside what this agent may heal (e.g. the load balancer in front of
    /// healthy replicas): someone else must act.
    OutOfScope,
    /// Preventive recycling cannot keep up: a replica's predicted OOM comes sooner than the
    /// recycles before it can finish (the leak outpaces them); reactive healing covers the rest.
    RecycleBehind,
}

impl EscalationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationReason::Recurrence => "recurrence",
            EscalationReason::CrashOnStart => "crash_on_start",
            EscalationReason::NeverHealthy => "never_healthy",
            EscalationReason::Refused => "refused",
            EscalationReason::BudgetSpent => "budget_spent",
            EscalationReason::OutOfScope => "out_of_scope",
            EscalationReason::RecycleBehind => "recycle_behind",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub reason: EscalationReason,
    /// What a human needs to act: the class, the exit code, the log tail, the count.
    pub detail: String,
    pub replicas: Vec<String>,
    /// Recurrences or attempts that led here.
    pub count: u32,
    /// For a recurrence: the numbers behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<RecurrenceFigures>,
}

/// What people need to judge a recurrence: how often replicas die, how long each life lasts,
/// at what memory, and the likely cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecurrenceFigures {
    /// Deaths of the service's replicas the agent healed within the window.
    pub deaths: u32,
    pub window_seconds: f64,
    pub deaths_per_minute: f64,
    /// Mean length of the lives that ended in those deaths.
    pub mean_life_seconds: f64,
    /// Deaths by the kernel's OOM killer among them.
    pub oom_kills: u32,
    /// The replicas' memory limit (what they held at an OOM death).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    pub replicas: usize,
    /// "more load than 3 replicas of 256 MiB can carry", ...
    pub likely_cause: String,
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
    /// The class of the replicas the run acted on (or found), see [`FailureClass`].
    #[serde(default)]
    pub class: FailureClass,
    /// The service's action level, from its `healstack.action` label.
    #[serde(default)]
    pub action_level: ActionLevel,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    /// Notification events queued for `NOTIFY_URL` (delivery is counted in the metrics).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<String>,
    /// For `out_of_scope`: whose problem it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_note: Option<String>,
    /// For `recycled` (and a recycle that failed): the memory that led to it and how it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle: Option<RecycleRecord>,
    /// A one-line human summary of the outcome.
    pub summary: String,
}

/// One recycle: why (the memory, its trend, the predicted time to the limit; or an operator),
/// and how it went, from SIGTERM to the new replica's passing healthcheck.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecycleRecord {
    pub replica: String,
    /// `memory` or `operator`.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::policy::recycle::MemoryFigures>,
    /// The stop timeout given with SIGTERM.
    pub stop_timeout_seconds: u32,
    /// Its exit code: 0 when it drained, 137 when the stop timeout ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// From SIGTERM to its exit.
    pub stop_seconds: f64,
    /// From SIGTERM to its passing healthcheck (absent when it did not serve again in time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_after_seconds: Option<f64>,
}

/// Bounds on what one incident may hold, whatever the model, the containers or an alert said.
pub const MAX_TEXT: usize = 2048;
pub const MAX_DETAIL: usize = 4096;
pub const MAX_DIAGNOSES: usize = 50;

impl Incident {
    /// The same incident with every free-text field and list within its bound (timeline entries
    /// are bounded as they are recorded).
    pub fn bounded(mut self) -> Self {
        use crate::text::bounded;
        self.summary = bounded(&self.summary, MAX_TEXT);
        self.scope_note = self.scope_note.map(|s| bounded(&s, MAX_TEXT));
        self.fallback_reason = self.fallback_reason.map(|s| bounded(&s, MAX_TEXT));
        self.diagnosis.truncate(MAX_DIAGNOSES);
        if let Some(e) = self.escalation.as_mut() {
            e.detail = bounded(&e.detail, MAX_DETAIL);
            e.replicas.truncate(MAX_DIAGNOSES);
        }
        if let Some(l) = self.llm.as_mut() {
            l.summary = l.summary.take().map(|s| bounded(&s, MAX_TEXT));
            l.ended = bounded(&l.ended, MAX_TEXT);
        }
        self
    }
}

/// A healed incident with every field set, for the crate's own unit tests (crates/test-support
/// has the same for the integration tests, which cannot reach this one).
#[cfg(test)]
pub(crate) fn sample_incident(id: &str) -> Incident {
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
