//! What the agent did to each replica, by failure class: the memory behind escalation.
//!
//! - Recurrence: the same replica healed for the same class `ESCALATE_AFTER` times within
//!   `ESCALATE_WINDOW` is escalated (once per window), so that a replica dying again and again is
//!   never a string of quiet restarts.
//! - Crash on start: how many times the agent started a replica that then crashed on start;
//!   the policy stops at `CRASH_ON_START_TRIES`.
//!
//! Kept in memory: after an agent restart the counts begin again, while the persisted restart
//! budget still bounds what the agent can do to a crash-looping replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::incidents::FailureClass;

#[derive(Debug, Clone)]
pub struct EscalationPolicy {
    pub after: u32,
    pub window: Duration,
    pub crash_on_start_tries: u32,
}

#[derive(Default)]
struct Replica {
    heals: Vec<(FailureClass, DateTime<Utc>)>,
    escalated_at: Option<DateTime<Utc>>,
}

pub struct History {
    policy: EscalationPolicy,
    replicas: Mutex<HashMap<String, Replica>>,
}

impl History {
    pub fn new(policy: EscalationPolicy) -> Self {
        History {
            policy,
            replicas: Mutex::new(HashMap::new()),
        }
    }

    pub fn policy(&self) -> &EscalationPolicy {
        &self.policy
    }

    fn since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::from_std(self.policy.window).unwrap_or(chrono::Duration::MAX)
    }

    /// Records an action on `replica` for `class` that Docker confirmed. Returns the number of
    /// such actions within the window when that calls for an escalation (and marks it escalated).
    pub fn record(&self, replica: &str, class: FailureClass, at: DateTime<Utc>) -> Option<u32> {
        let since = self.since(at);
        let mut all = self.replicas.lock().expect("history lock");
        let r = all.entry(replica.to_string()).or_default();
        r.heals.retain(|(_, t)| *t > since);
        r.heals.push((class, at));
        // Bounded: nothing older than the window is kept, and nobody heals that often.
        if r.heals.len() > 1000 {
            r.heals.remove(0);
        }
        let count = r.heals.iter().filter(|(c, _)| *c == class).count() as u32;
        let recently_escalated = r.escalated_at.is_some_and(|t| t > since);
        if self.policy.after > 0 && count >= self.policy.after && !recently_escalated {
            r.escalated_at = Some(at);
            return Some(count);
        }
        None
    }

    /// Confirmed actions on `replica` for `class` within the window.
    pub fn count(&self, replica: &str, class: FailureClass, now: DateTime<Utc>) -> u32 {
        let since = self.since(now);
        self.replicas
            .lock()
            .expect("history lock")
            .get(replica)
            .map(|r| {
                r.heals
                    .iter()
                    .filter(|(c, t)| *c == class && *t > since)
                    .count() as u32
            })
            .unwrap_or(0)
    }

    /// Marks `replica` escalated now (a give-up), so that recurrences do not escalate it again
    /// within the window.
    pub fn mark_escalated(&self, replica: &str, at: DateTime<Utc>) {
        self.replicas
            .lock()
            .expect("history lock")
            .entry(replica.to_string())
            .or_default()
            .escalated_at = Some(at);
    }

    /// Forgets `replica` (an operator's reset).
    pub fn reset(&self, replica: &str) -> bool {
        self.replicas
            .lock()
            .expect("history lock")
            .remove(replica)
            .is_some()
    }

    /// Forgets replicas with nothing in the window (keeps memory bounded over weeks).
    pub fn prune(&self, now: DateTime<Utc>) {
        let since = self.since(now);
        self.replicas.lock().expect("history lock").retain(|_, r| {
            r.heals.iter().any(|(_, t)| *t > since) || r.escalated_at.is_some_and(|t| t > since)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        History::new(EscalationPolicy {
            after: 3,
            window: Duration::from_secs(600),
            crash_on_start_tries: 2,
        })
    }

    #[test]
    fn the_nth_recurrence_in_the_window_escalates_once() {
        let h = history();
        let t = Utc::now();
        let s = |n: i64| t + chrono::Duration::seconds(n);
        assert_eq!(h.record("r1", FailureClass::Killed, s(0)), None);
        assert_eq!(
            h.record("r1", FailureClass::OomKilled, s(1)),
            None,
            "another class counts apart"
        );
        assert_eq!(h.record("r1", FailureClass::Killed, s(2)), None);
        assert_eq!(
            h.record("r2", FailureClass::Killed, s(3)),
            None,
            "another replica counts apart"
        );
        assert_eq!(h.record("r1", FailureClass::Killed, s(4)), Some(3));
        assert_eq!(
            h.record("r1", FailureClass::Killed, s(5)),
            None,
            "escalated once per window"
        );
        assert_eq!(h.count("r1", FailureClass::Killed, s(5)), 4);
        // Past the window the old heals and the escalation age out.
        assert_eq!(h.count("r1", FailureClass::Killed, s(700)), 0);
        assert_eq!(h.record("r1", FailureClass::Killed, s(700)), None);
        assert!(h.reset("r1"));
        assert_eq!(h.count("r1", FailureClass::Killed, s(700)), 0);
        h.prune(s(2000));
        assert!(h.replicas.lock().unwrap().is_empty());
    }
}
