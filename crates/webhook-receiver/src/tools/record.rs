//! The record of one run, apart from the policy and the tool bodies: the timeline of every call,
//! the replicas being acted on right now, the actions Docker confirmed, the replicas given up on,
//! and how many restart requests each actor made. An action counts as taken only once the runtime
//! confirmed it.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::incidents::{ActionKind, ActionRecord, EscalationReason, FailureClass};
use crate::ledger::Life;
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
    /// The starts (crash on start) or refusals that did not help.
    pub count: u32,
    /// The life of the replica it was given up on (left alone until that changes).
    pub life: Life,
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
    /// Timeline entries not kept (past [`MAX_TIMELINE`]).
    dropped: Mutex<usize>,
    /// Container ids an action of this run is in flight on.
    in_flight: Mutex<HashSet<String>>,
    acted: Mutex<Vec<Acted>>,
    gave_up: Mutex<Vec<GaveUp>>,
    recurrences: Mutex<Vec<Recurrence>>,
    model_requests: Mutex<usize>,
    runbook_requests: Mutex<usize>,
}

/// Most timeline entries kept per run: a model that loops cannot grow an incident without bound.
const MAX_TIMELINE: usize = 200;
/// Largest JSON of one entry's result, and of its arguments (a tool result listing fifty
/// replicas with their logs, a model's arguments): past it, its size and its start are kept.
pub const MAX_ENTRY_DETAIL: usize = 4096;
pub const MAX_ENTRY_ARGS: usize = 1024;

/// An action in flight on one container, for as long as this value lives.
pub struct Hold<'a> {
    record: &'a RunRecord,
    id: String,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.record
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

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
            *self.dropped.lock().expect("record lock") += 1;
            return;
        }
        t.push(ActionRecord {
            at,
            action: crate::text::bounded(action, 64),
            target: target.map(|t| crate::text::bounded(t, 128)),
            args: crate::text::bounded_json(args, MAX_ENTRY_ARGS),
            result: result.to_string(),
            detail: crate::text::bounded_json(detail, MAX_ENTRY_DETAIL),
            by: by.as_str().to_string(),
        });
    }

    /// The timeline, with a last entry saying how many were not kept.
    pub fn timeline(&self) -> Vec<ActionRecord> {
        let mut t = self.timeline.lock().expect("record lock").clone();
        let dropped = *self.dropped.lock().expect("record lock");
        if dropped > 0 {
            let at = t.last().map(|a| a.at).unwrap_or_else(chrono::Utc::now);
            t.push(ActionRecord {
                at,
                action: "timeline_truncated".into(),
                target: None,
                args: Value::Null,
                result: "skipped".into(),
                detail: serde_json::json!({ "entries_not_kept": dropped }),
                by: Actor::Agent.as_str().to_string(),
            });
        }
        t
    }

    /// Marks an action on container `id` as in flight, before any await: `None` when another
    /// call of this run already acts on it (whatever name it used).
    pub fn hold(&self, id: &str) -> Option<Hold<'_>> {
        let fresh = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
        fresh.then(|| Hold {
            record: self,
            id: id.to_string(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_that_loops_cannot_grow_its_incident() {
        let r = RunRecord::default();
        let now = chrono::Utc::now();
        let big = json!({ "logs": "x".repeat(100_000) });
        for _ in 0..500 {
            r.push(
                now,
                Actor::Llm,
                "list_webapp_status",
                Some("p-webapp-1"),
                big.clone(),
                "ok",
                big.clone(),
            );
        }
        let t = r.timeline();
        assert_eq!(
            t.len(),
            MAX_TIMELINE + 1,
            "kept, and a note of what was not"
        );
        assert_eq!(t.last().unwrap().detail["entries_not_kept"], 300);
        for e in &t {
            assert!(
                e.detail.to_string().len() <= MAX_ENTRY_DETAIL,
                "{}",
                e.detail.to_string().len()
            );
            assert!(e.args.to_string().len() <= MAX_ENTRY_ARGS);
        }
        assert_eq!(t[0].detail["truncated"], true);
    }

    #[test]
    fn one_hold_per_container_until_it_is_released() {
        let r = RunRecord::default();
        let first = r.hold("c1").expect("free");
        assert!(r.hold("c1").is_none(), "already being acted on");
        assert!(r.hold("c2").is_some());
        drop(first);
        assert!(r.hold("c1").is_some(), "released with its action");
    }
}
