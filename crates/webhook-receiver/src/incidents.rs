//! The incident record and its store: an append-only JSON-lines file, replayed at start, with the
//! newest incidents kept in memory for `GET /incidents`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// How many incidents `/incidents` can return; older ones stay in the file.
const KEEP_IN_MEMORY: usize = 2000;

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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open incident log {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write incident log: {0}")]
    Write(#[from] std::io::Error),
}

pub struct IncidentStore {
    path: Option<PathBuf>,
    recent: Mutex<VecDeque<Incident>>,
    file: tokio::sync::Mutex<Option<tokio::fs::File>>,
}

impl IncidentStore {
    /// Opens (creating) the log at `path` and replays it; `None` keeps incidents in memory only.
    /// Lines that do not parse (e.g. a torn last write) are skipped with a warning, never fatal.
    pub async fn open(path: Option<PathBuf>) -> Result<Self, StoreError> {
        let mut recent = VecDeque::new();
        let mut file = None;
        if let Some(p) = &path {
            let open_err = |source| StoreError::Open {
                path: p.display().to_string(),
                source,
            };
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir).await.map_err(open_err)?;
            }
            match tokio::fs::read_to_string(p).await {
                Ok(text) => {
                    for (n, line) in text
                        .lines()
                        .enumerate()
                        .filter(|(_, l)| !l.trim().is_empty())
                    {
                        match serde_json::from_str::<Incident>(line) {
                            Ok(i) => {
                                recent.push_back(i);
                                if recent.len() > KEEP_IN_MEMORY {
                                    recent.pop_front();
                                }
                            }
                            Err(e) => {
                                tracing::warn!(line = n + 1, error = %e, "skipping unreadable incident log line")
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(open_err(e)),
            }
            let f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .await
                .map_err(open_err)?;
            file = Some(f);
        }
        Ok(IncidentStore {
            path,
            recent: Mutex::new(recent),
            file: tokio::sync::Mutex::new(file),
        })
    }

    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Appends one incident (one line, flushed and synced) and keeps it for `/incidents`.
    pub async fn append(&self, incident: Incident) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(&incident).expect("incident serialises");
        line.push(b'\n');
        {
            let mut recent = self.recent.lock().expect("incident lock");
            recent.push_back(incident);
            if recent.len() > KEEP_IN_MEMORY {
                recent.pop_front();
            }
        }
        let mut file = self.file.lock().await;
        if let Some(f) = file.as_mut() {
            f.write_all(&line).await?;
            f.sync_data().await?;
        }
        Ok(())
    }

    /// Newest first.
    pub fn recent(&self, limit: usize) -> Vec<Incident> {
        let recent = self.recent.lock().expect("incident lock");
        recent.iter().rev().take(limit).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.recent.lock().expect("incident lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(id: &str) -> Incident {
        let now = Utc::now();
        Incident {
            id: id.into(),
            service: "webapp".into(),
            project: "p".into(),
            trigger: TriggerKind::Alert,
            triggers: vec![],
            mode: Mode::Runbook,
            outcome: Outcome::Healed,
            started_at: now,
            resolved_at: Some(now),
            mttr_seconds: Some(1.5),
            run_started_at: now,
            run_seconds: 0.5,
            diagnosis: vec![],
            timeline: vec![],
            llm: None,
            fallback_reason: None,
            summary: "ok".into(),
        }
    }

    #[tokio::test]
    async fn incidents_survive_a_restart_and_torn_lines_are_skipped() {
        let dir = std::env::temp_dir().join(format!("incidents-test-{}", std::process::id()));
        let path = dir.join("sub/incidents.jsonl");
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = IncidentStore::open(Some(path.clone())).await.unwrap();
            store.append(incident("a")).await.unwrap();
            store.append(incident("b")).await.unwrap();
        }
        // A torn write at the end must not lose what came before it.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"id\": \"torn");
        std::fs::write(&path, text + "\n").unwrap();
        let store = IncidentStore::open(Some(path.clone())).await.unwrap();
        let ids: Vec<_> = store.recent(10).into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["b", "a"]);
        store.append(incident("c")).await.unwrap();
        assert_eq!(store.recent(1)[0].id, "c");
        std::fs::remove_dir_all(dir).ok();
    }
}
