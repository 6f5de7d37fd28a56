//! The healing engine: a small controller in the kube-rs mould.
//!
//! - Triggers (alerts, Docker events) name a service; anything outside the [`Scope`] is dropped.
//! - One run per service at a time. Triggers that arrive while a run is in flight coalesce into one
//!   follow-up run, which again starts from the live state, so repeats are recorded no-ops.
//! - A run observes, lets its [`Strategy`] act through the tools, falls back to the runbook when the
//!   strategy fails or leaves replicas down, verifies by code, and records one incident.

mod events;
mod run;
mod strategy;
mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use events::watch_events;
pub use strategy::{Brief, Runbook, Strategy, StrategyReport};

use crate::incidents::{IncidentStore, TriggerRecord};
use crate::metrics::Metrics;
use crate::scope::Scope;
use crate::tools::ToolContext;

/// Most triggers kept per pending run (duplicates are merged before this applies).
const MAX_PENDING: usize = 64;

pub struct EngineConfig {
    pub verify_timeout: Duration,
    /// Pause before a run starts, so a burst of triggers (several replicas dying together) is one run.
    pub debounce: Duration,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<ToolContext>,
    scope: Scope,
    strategy: Arc<dyn Strategy>,
    incidents: Arc<IncidentStore>,
    metrics: Metrics,
    config: EngineConfig,
    slots: Mutex<HashMap<String, Slot>>,
    seq: AtomicU64,
}

#[derive(Default)]
struct Slot {
    running: bool,
    pending: Vec<TriggerRecord>,
}

impl Engine {
    pub fn new(
        ctx: Arc<ToolContext>,
        scope: Scope,
        strategy: Arc<dyn Strategy>,
        incidents: Arc<IncidentStore>,
        metrics: Metrics,
        config: EngineConfig,
    ) -> Self {
        let seq = AtomicU64::new(incidents.len() as u64);
        Engine {
            inner: Arc::new(Inner {
                ctx,
                scope,
                strategy,
                incidents,
                metrics,
                config,
                slots: Mutex::new(HashMap::new()),
                seq,
            }),
        }
    }

    pub fn scope(&self) -> &Scope {
        &self.inner.scope
    }

    pub fn strategy(&self) -> &Arc<dyn Strategy> {
        &self.inner.strategy
    }

    /// Queues a healing run of `service`. Returns false (and does nothing) when the service is not
    /// one the agent may heal. Never blocks on the run.
    pub fn trigger(&self, service: &str, trigger: TriggerRecord) -> bool {
        let Some(service) = self.inner.scope.service(service).map(str::to_string) else {
            return false;
        };
        let mut slots = self.inner.slots.lock().expect("slots lock");
        let slot = slots.entry(service.clone()).or_default();
        let duplicate = slot.pending.iter().any(|p| {
            p.kind == trigger.kind && p.name == trigger.name && p.container == trigger.container
        });
        if slot.pending.is_empty() || (!duplicate && slot.pending.len() < MAX_PENDING) {
            slot.pending.push(trigger);
        }
        if !slot.running {
            slot.running = true;
            let engine = self.clone();
            tokio::spawn(async move { engine.drive(service).await });
        }
        true
    }

    /// Runs `service` until no triggers are pending. Only one `drive` per service exists at a time.
    async fn drive(self, service: String) {
        loop {
            tokio::time::sleep(self.inner.config.debounce).await;
            let triggers = {
                let mut slots = self.inner.slots.lock().expect("slots lock");
                let slot = slots.get_mut(&service).expect("slot exists while running");
                if slot.pending.is_empty() {
                    slot.running = false;
                    return;
                }
                std::mem::take(&mut slot.pending)
            };
            let n = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let id = format!(
                "{}-{service}-{n:05}",
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            );
            let incident = self.run(&id, &service, triggers).await;
            self.inner
                .metrics
                .incidents
                .with_label_values(&[incident.outcome.as_str(), incident.mode.as_str()])
                .inc();
            if let Some(mttr) = incident
                .mttr_seconds
                .filter(|_| incident.outcome == crate::incidents::Outcome::Healed)
            {
                self.inner
                    .metrics
                    .time_to_recovery
                    .with_label_values(&[service.as_str()])
                    .observe(mttr);
            }
            let open = self
                .inner
                .ctx
                .budget
                .open_breakers(&service, chrono::Utc::now());
            self.inner
                .metrics
                .circuit_breakers_open
                .with_label_values(&[service.as_str()])
                .set(open as i64);
            if let Err(e) = self.inner.incidents.append(incident).await {
                tracing::error!(error = %e, incident = %id, "could not append to the incident log");
            }
        }
    }

    /// True while any run is queued or in flight.
    pub fn busy(&self) -> bool {
        self.inner
            .slots
            .lock()
            .expect("slots lock")
            .values()
            .any(|s| s.running)
    }

    /// Waits until no run is queued or in flight (for tests and shutdown), at most `timeout`.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.busy() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}
