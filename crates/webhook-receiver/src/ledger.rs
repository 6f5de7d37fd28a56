//! What the agent remembers about each replica, and the one place that writes it: the restart
//! backoff and tries ([`crate::budget`], persisted), the deaths it healed ([`crate::history`]),
//! and the replicas it gave up on.
//!
//! [`Ledger::facts`] gathers what a decision needs from here (the rest comes from the run);
//! [`crate::policy::decide`] decides; the outcome comes back here: [`Ledger::acted`] once Docker
//! confirmed an action, [`Ledger::observed`] after every look, [`Ledger::park`] when the agent
//! gives up. The engine and the tools never write budgets or history themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::budget::RestartBudget;
use crate::history::History;
use crate::incidents::{EscalationReason, ReplicaDiagnosis};
use crate::persist::lock;
use crate::policy::{Parked, ReplicaFacts};

/// The first quiet try at a replica given up on, and the longest wait between two. The cause may
/// go away (a port freed, a dependency back), as Docker's own restart policy would find out; but
/// a replica given up on is people's to fix, so the agent tries rarely: where Kubernetes' backoff
/// ends (5 minutes), doubling to an hour. `POST /reset` tries at once.
pub const PARKED_RETRY_FIRST: Duration = Duration::from_secs(300);
pub const PARKED_RETRY_MAX: Duration = Duration::from_secs(3600);

/// One life of a replica: it changes with every start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Life {
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Life {
    pub fn of(d: &ReplicaDiagnosis) -> Self {
        Life {
            started_at: d.started_at,
            finished_at: d.finished_at,
        }
    }
}

/// A replica given up on.
#[derive(Debug, Clone)]
struct Park {
    reason: EscalationReason,
    /// The life it was given up on; another life is looked at afresh.
    life: Life,
    retry_at: DateTime<Utc>,
    /// Times given up on in a row (the quiet tries back off).
    times: u32,
}

pub struct Ledger {
    budget: Arc<RestartBudget>,
    history: History,
    parked: Mutex<HashMap<String, Park>>,
}

impl Ledger {
    pub fn new(budget: Arc<RestartBudget>, history: History) -> Self {
        Ledger {
            budget,
            history,
            parked: Mutex::new(HashMap::new()),
        }
    }

    pub fn budget(&self) -> &Arc<RestartBudget> {
        &self.budget
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// What the agent remembers of the replica diagnosed as `d`, for [`crate::policy::decide`].
    pub fn facts(&self, d: &ReplicaDiagnosis, now: DateTime<Utc>) -> ReplicaFacts {
        let backoff = self.budget.backoff(&d.name, now);
        let parked = lock(&self.parked)
            .get(&d.name)
            .filter(|p| p.life == Life::of(d))
            .map(|p| Parked {
                reason: p.reason,
                retry_at: p.retry_at,
                retry_due: now >= p.retry_at,
            });
        ReplicaFacts {
            tries: self.budget.tries(&d.name),
            max_tries: self.history.policy().crash_on_start_tries,
            wait: backoff.wait,
            attempt: backoff.attempt,
            parked,
        }
    }

    /// After a look at the replicas: a life that served ends the tries, one healthy for the
    /// stable period ends the backoff streak, and a replica given up on that serves again is let
    /// go. Returns the replicas let go.
    pub fn observed(&self, diagnoses: &[ReplicaDiagnosis]) -> Vec<String> {
        let mut let_go = Vec::new();
        for d in diagnoses {
            if d.served {
                self.budget.served(&d.name);
            }
            let stable_for = d
                .healthy_seconds
                .or(if d.health.is_none() && d.served {
                    d.uptime_seconds
                } else {
                    None
                })
                .unwrap_or(0.0);
            if self
                .budget
                .settle_if_stable(&d.name, Duration::from_secs_f64(stable_for.max(0.0)))
            {
                tracing::debug!(replica = %d.name, healthy_s = stable_for, "ran healthy for the stable period; its backoff starts again");
            }
            let serving = d.status == "running" && d.served && !d.needs_healing;
            if serving && lock(&self.parked).remove(&d.name).is_some() {
                let_go.push(d.name.clone());
            }
        }
        let_go
    }

    /// Docker confirmed an action on the replica diagnosed as `d` at `at`. Returns the count
    /// when its deaths of this kind make a recurrence. Tries at a replica that never served are
    /// not deaths of a serving replica: giving up on it is their escalation, not a recurrence.
    pub fn acted(&self, service: &str, d: &ReplicaDiagnosis, at: DateTime<Utc>) -> Option<u32> {
        self.budget.record(service, &d.name, at);
        if crate::policy::may_give_up(d) {
            None
        } else {
            self.history.record(service, d, at)
        }
    }

    /// The agent gives up on this life of `replica`: it is left alone until the returned time,
    /// when one quiet try is made (each give-up in a row doubles the wait, up to
    /// [`PARKED_RETRY_MAX`]).
    pub fn park(
        &self,
        replica: &str,
        life: Life,
        reason: EscalationReason,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let mut parked = lock(&self.parked);
        let times = parked.get(replica).map_or(0, |p| p.times) + 1;
        let wait = PARKED_RETRY_FIRST
            .saturating_mul(1u32 << (times - 1).min(16))
            .min(PARKED_RETRY_MAX);
        let retry_at = now + chrono::Duration::from_std(wait).unwrap_or_default();
        parked.insert(
            replica.to_string(),
            Park {
                reason,
                life,
                retry_at,
                times,
            },
        );
        retry_at
    }

    /// Whether `replica` is given up on in the life `d` shows.
    pub fn is_parked(&self, d: &ReplicaDiagnosis) -> bool {
        lock(&self.parked)
            .get(&d.name)
            .is_some_and(|p| p.life == Life::of(d))
    }

    /// Forgets everything about `replica` (an operator's reset). True when there was anything.
    pub fn reset(&self, replica: &str) -> bool {
        let budget = self.budget.reset(replica);
        let history = self.history.reset(replica);
        let parked = lock(&self.parked).remove(replica).is_some();
        budget || history || parked
    }

    /// Drops what has aged out (the periodic resync).
    pub fn prune(&self, now: DateTime<Utc>) {
        self.history.prune(now);
    }
}
