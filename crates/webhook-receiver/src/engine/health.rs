//! Is the service as it should be? What the last look found, with the escalations still open:
//! `/healthz` says `degraded` and `healing_service_degraded` is 1 while a replica is down (being
//! healed, notify-only), given up on, or an escalation is open (a recurrence, a crash on start).
//! The agent's own process may be perfectly fine meanwhile: `/healthz` still answers 200.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::escalations::{Key, Open};
use super::Engine;
use crate::diagnosis::Observation;
use crate::incidents::{ActionKind, ActionLevel, EscalationReason};

/// One service as the agent last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceHealth {
    /// `ok`, `degraded`, `off` (the agent leaves it alone), or `unknown` (not looked at yet).
    pub status: &'static str,
    pub replicas: usize,
    pub serving: usize,
    /// Replicas that need healing (and are not given up on).
    pub down: Vec<String>,
    /// Replicas the agent gave up on (escalated; left alone until they change).
    pub given_up: Vec<String>,
    pub escalations: Vec<Open>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    off: bool,
}

impl ServiceHealth {
    pub fn degraded(&self) -> bool {
        !self.off
            && (!self.down.is_empty() || !self.given_up.is_empty() || !self.escalations.is_empty())
    }
}

impl Engine {
    /// Every healable service as last seen, with its open escalations.
    pub fn health(&self) -> BTreeMap<String, ServiceHealth> {
        let services: Vec<String> = self.inner.scope.services().map(str::to_string).collect();
        let state = self.state();
        services
            .into_iter()
            .map(|s| {
                let mut h = state
                    .services
                    .get(&s)
                    .map(|slot| slot.health.clone())
                    .unwrap_or_default();
                h.escalations = self.inner.escalations.of_service(&s);
                h.status = if h.off {
                    "off"
                } else if h.degraded() {
                    "degraded"
                } else if h.checked_at.is_none() {
                    "unknown"
                } else {
                    "ok"
                };
                (s, h)
            })
            .collect()
    }

    /// Remembers what a look at `service` found: `given_up` are the replicas left alone.
    pub(super) fn note_look(&self, service: &str, obs: &Observation, given_up: &[String]) {
        let off = obs.level == ActionLevel::Off;
        let down = obs
            .replicas
            .iter()
            .filter(|o| o.diagnosis.action != ActionKind::None)
            .map(|o| o.diagnosis.name.clone())
            .filter(|n| !given_up.contains(n))
            .collect();
        {
            let mut state = self.state();
            let slot = state.services.entry(service.to_string()).or_default();
            slot.health = ServiceHealth {
                status: "",
                replicas: obs.replicas.len(),
                serving: obs.replicas.iter().filter(|o| o.state.is_serving()).count(),
                down: if off { Vec::new() } else { down },
                given_up: if off { Vec::new() } else { given_up.to_vec() },
                escalations: Vec::new(),
                checked_at: Some(obs.at),
                off,
            };
        }
        self.publish_health(service);
    }

    /// A run verified these replicas serve again.
    pub(super) fn note_serving(&self, service: &str, names: &[String]) {
        if let Some(slot) = self.state().services.get_mut(service) {
            slot.health.down.retain(|n| !names.contains(n));
            slot.health.given_up.retain(|n| !names.contains(n));
        }
        self.publish_health(service);
    }

    /// Sets the service's gauges from what is known now.
    pub(super) fn publish_health(&self, service: &str) {
        let Some(h) = self.health().remove(service) else {
            return;
        };
        let m = &self.inner.metrics;
        let set = |g: &prometheus::IntGaugeVec, v: usize| {
            g.with_label_values(&[service]).set(v as i64);
        };
        set(&m.replicas_down, h.down.len());
        set(&m.replicas_given_up, h.given_up.len());
        set(&m.circuit_breakers_open, h.given_up.len());
        set(&m.escalations_open, h.escalations.len());
        set(&m.service_degraded, usize::from(h.degraded()));
    }

    /// Closes the escalations of `service` that the look `obs` shows resolved: a replica given up
    /// on that serves again (or is gone), a failure in front of the replicas that stopped.
    pub(super) fn close_resolved(&self, service: &str, obs: &Observation) {
        let serving: HashSet<&str> = obs
            .replicas
            .iter()
            .filter(|o| o.state.is_serving())
            .map(|o| o.diagnosis.name.as_str())
            .collect();
        let present: HashSet<&str> = obs
            .replicas
            .iter()
            .map(|o| o.diagnosis.name.as_str())
            .collect();
        let front_ok = !obs.service_failing();
        let closed = self.inner.escalations.close_where(|k| match k {
            Key::Replica {
                service: s,
                replica,
                ..
            } if s == service => {
                serving.contains(replica.as_str()) || !present.contains(replica.as_str())
            }
            Key::Service {
                service: s,
                reason: EscalationReason::OutOfScope,
            } if s == service => front_ok,
            _ => false,
        });
        if closed > 0 {
            tracing::info!(
                service,
                closed,
                "escalations resolved: what they were about serves again"
            );
        }
        self.close_quiet_recurrence(service, obs.at);
    }

    /// A recurrence stays open until the service went a whole escalation window without a death.
    pub(super) fn close_quiet_recurrence(&self, service: &str, now: DateTime<Utc>) {
        let history = self.inner.ctx.ledger.history();
        let window = chrono::Duration::from_std(history.policy().window).unwrap_or_default();
        let quiet = history.last_death(service).is_none_or(|t| now - t > window);
        if !quiet {
            return;
        }
        let closed = self.inner.escalations.close_where(|k| {
            matches!(k, Key::Service { service: s, reason: EscalationReason::Recurrence } if s == service)
        });
        if closed > 0 {
            tracing::info!(
                service,
                "recurrence over: no death for a whole escalation window"
            );
        }
    }
}
