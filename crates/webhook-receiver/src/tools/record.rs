//! The record of one run, apart from the policy and the tool bodies: the timeline of every call,
//! the actions Docker confirmed, the replicas given up on, and how many restart requests each
//! actor made. An action counts as taken only once the runtime confirmed it.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::incidents::{ActionKind, ActionRecord, EscalationReason, FailureClass};
use crate::policy::Actor;
use crate::runtime::ContainerRef;

/// An action Docker confirmed.
#[derive(Debug, Clone, PartialEq)]
pub struct Acted {
    pub container: ContainerRef,
    pub action: ActionKind,
    pub class: FailureClass,
    /// When the action began (Docker confirmed it after).
    pub at: DateTime<Utc>,
    pub by: Actor,
}

/// A replica the agent stopped acting on, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct GaveUp {
    pub name: String,
    pub reason: EscalationReason,
    pub detail: String,
    /// The starts (crash on start) or restarts (budget) that did not help.
    pub count: u32,
}

/// A recurrence the history flagged when an action was confirmed.
#[derive(Debug, Clone, PartialEq)]
pub struct Recurrence {
    pub name: String,
    pub class: FailureClass,
    pub count: u32,
}

#[derive(Default)]
pub struct RunRecord {
    timeline: Mutex<Vec<ActionRecord>>,
    acted: Mutex<Vec<Acted>>,
    gave_up: Mutex<Vec<GaveUp>>,
    recurrences: Mutex<Vec<Recurrence>>,
    model_requests: Mutex<usize>,
    runbook_requests: Mutex<usize>,
}

/// Most timeline entries kept per run: a model that loops cannot grow an incident without bound.
const MAX_TIMELINE: usize = 200;

impl RunRecord {
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &self,
        at: DateTime<Utc>,
        by: Actor,
        action: &str,
        target: Option<&str>,
        args: Value,
        result: &str,
        detail: Value,
    ) {
        let mut t = self.timeline.lock().expect("record lock");
        if t.len() >= MAX_TIMELINE {
            return;
        }
        t.push(ActionRecord {
            at,
            action: action.to_string(),
            target: target.map(str::to_string),
            args,
            result: result.to_string(),
            detail,
            by: by.as_str().to_string(),
        });
    }

    pub fn timeline(&self) -> Vec<ActionRecord> {
        self.timeline.lock().expect("record lock").clone()
    }

    /// Counts a restart request of `by` and returns how many it has made in this run.
    pub fn count_request(&self, by: Actor) -> usize {
        let mut n = match by {
            Actor::Llm => self.model_requests.lock(),
            _ => self.runbook_requests.lock(),
        }
        .expect("record lock");
        *n += 1;
        *n
    }

    pub fn acted(&self) -> Vec<Acted> {
        self.acted.lock().expect("record lock").clone()
    }

    pub fn has_acted_on(&self, container_id: &str) -> bool {
        self.acted
            .lock()
            .expect("record lock")
            .iter()
            .any(|a| a.container.id == container_id)
    }

    pub fn confirm(&self, acted: Acted) {
        self.acted.lock().expect("record lock").push(acted);
    }

    pub fn give_up(&self, g: GaveUp) {
        let mut all = self.gave_up.lock().expect("record lock");
        if !all.iter().any(|x| x.name == g.name) {
            all.push(g);
        }
    }

    pub fn gave_up(&self) -> Vec<GaveUp> {
        self.gave_up.lock().expect("record lock").clone()
    }

    pub fn recur(&self, r: Recurrence) {
        self.recurrences.lock().expect("record lock").push(r);
    }

    pub fn recurrences(&self) -> Vec<Recurrence> {
        self.recurrences.lock().expect("record lock").clone()
    }
}
