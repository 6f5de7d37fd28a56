//! The escalations open right now: what people have been told and not yet seen resolved. An
//! escalation is told once (one incident, one notification) and stays open, quietly, until what
//! it is about changes: the replica serves again, the recurrence stops for a whole window, the
//! service URL answers again, or an operator resets the replica. `/healthz` and the metrics
//! report them.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::incidents::{Escalation, EscalationReason};
use crate::persist::lock;

/// What an escalation is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// The service as a whole: a recurrence across its replicas, a failure in front of them.
    Service {
        service: String,
        reason: EscalationReason,
    },
    /// One replica given up on.
    Replica {
        service: String,
        replica: String,
        reason: EscalationReason,
    },
}

impl Key {
    /// The keys an incident's escalation opens.
    pub fn of(service: &str, e: &Escalation) -> Vec<Key> {
        match e.reason {
            EscalationReason::Recurrence
            | EscalationReason::OutOfScope
            | EscalationReason::RecycleBehind => vec![Key::Service {
                service: service.to_string(),
                reason: e.reason,
            }],
            _ => e
                .replicas
                .iter()
                .map(|r| Key::Replica {
                    service: service.to_string(),
                    replica: r.clone(),
                    reason: e.reason,
                })
                .collect(),
        }
    }

    fn service(&self) -> &str {
        match self {
            Key::Service { service, .. } | Key::Replica { service, .. } => service,
        }
    }
}

/// An open escalation, as `/healthz` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Open {
    pub reason: EscalationReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    pub since: DateTime<Utc>,
    /// The incident that told people.
    pub incident: String,
    pub summary: String,
}

#[derive(Default)]
pub struct Escalations {
    open: Mutex<HashMap<Key, Open>>,
}

/// Most escalations kept open (a bound, not a limit anyone should meet).
const MAX_OPEN: usize = 1000;

impl Escalations {
    /// Opens what `e` is about; returns the keys that were not open yet (empty: people were
    /// told already, and stay untold).
    pub fn open(
        &self,
        service: &str,
        e: &Escalation,
        incident: &str,
        summary: &str,
        now: DateTime<Utc>,
    ) -> Vec<Key> {
        let mut open = lock(&self.open);
        let mut fresh = Vec::new();
        for key in Key::of(service, e) {
            if open.contains_key(&key) || open.len() >= MAX_OPEN {
                continue;
            }
            let replica = match &key {
                Key::Replica { replica, .. } => Some(replica.clone()),
                Key::Service { .. } => None,
            };
            open.insert(
                key.clone(),
                Open {
                    reason: e.reason,
                    replica,
                    since: now,
                    incident: incident.to_string(),
                    summary: crate::text::bounded(summary, 300),
                },
            );
            fresh.push(key);
        }
        fresh
    }

    pub fn is_open(&self, key: &Key) -> bool {
        lock(&self.open).contains_key(key)
    }

    /// Closes the escalations `keep` says no to; returns how many.
    pub fn close_where(&self, mut close: impl FnMut(&Key) -> bool) -> usize {
        let mut open = lock(&self.open);
        let before = open.len();
        open.retain(|k, _| !close(k));
        before - open.len()
    }

    /// The open escalations of `service`, oldest first.
    pub fn of_service(&self, service: &str) -> Vec<Open> {
        let mut v: Vec<Open> = lock(&self.open)
            .iter()
            .filter(|(k, _)| k.service() == service)
            .map(|(_, o)| o.clone())
            .collect();
        v.sort_by_key(|o| o.since);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(reason: EscalationReason, replicas: &[&str]) -> Escalation {
        Escalation {
            reason,
            detail: String::new(),
            replicas: replicas.iter().map(|r| r.to_string()).collect(),
            count: 1,
            figures: None,
        }
    }

    #[test]
    fn an_escalation_is_opened_once_and_closed_when_told() {
        let e = Escalations::default();
        let now = Utc::now();
        let rec = esc(EscalationReason::Recurrence, &["a"]);
        assert_eq!(e.open("web", &rec, "i1", "", now).len(), 1);
        assert!(
            e.open(
                "web",
                &esc(EscalationReason::Recurrence, &["b"]),
                "i2",
                "",
                now
            )
            .is_empty(),
            "one recurrence per service"
        );
        let crash = esc(EscalationReason::CrashOnStart, &["a", "b"]);
        assert_eq!(e.open("web", &crash, "i3", "", now).len(), 2);
        assert!(e.open("web", &crash, "i4", "", now).is_empty());
        assert_eq!(e.of_service("web").len(), 3);
        assert_eq!(
            e.close_where(|k| matches!(k, Key::Replica { replica, .. } if replica == "a")),
            1
        );
        assert_eq!(e.of_service("web").len(), 2);
        assert!(e.of_service("other").is_empty());
    }
}
