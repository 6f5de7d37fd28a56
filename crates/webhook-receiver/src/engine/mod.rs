//! The healing engine: a controller in the kube-runtime mould.
//!
//! - Triggers (alerts, Docker events, the periodic resync, start-up, retries) name a service;
//!   anything outside the [`Scope`] is recorded as out of scope and never acted on.
//! - Triggers are coalesced (debounce), then the service is observed from live state and each
//!   replica diagnosed ([`crate::diagnosis`]); [`plan`] decides per replica, with the same policy
//!   the tools apply, whether a run is worth starting at all.
//! - The unit of exclusivity is the replica: a run claims the replicas it heals, and a trigger that
//!   arrives while a run is in flight starts a new run at once for the replicas nobody claimed.
//!   So the death of a second replica is never stuck behind a slow model conversation about the
//!   first, and no replica is ever acted on by two runs at once.
//! - A run returns what happens next: done, or requeue after a backoff (failed, Docker
//!   unreachable). Given-up replicas are recorded once and cost no run until the budget window
//!   reopens or an operator resets them.
//! - Runs are supervised: a panic is caught, logged, counted, recorded, its claims released and the
//!   service requeued. On shutdown, runs get `DRAIN_TIMEOUT` to finish; the rest are recorded
//!   `interrupted`.

mod events;
mod plan;
mod run;
mod strategy;
mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use events::watch_events;
pub use strategy::{Brief, Runbook, Strategy, StrategyReport};

use crate::context::Context;
use crate::incidents::{Incident, IncidentStore, TriggerKind, TriggerRecord};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::scope::Scope;

/// Most triggers kept per pending start (duplicates are merged before this applies).
const MAX_PENDING: usize = 64;

pub struct EngineConfig {
    /// Pause before a run starts, so a burst of triggers (several replicas dying together) is one run.
    pub debounce: Duration,
    /// First and longest wait before retrying a service whose run failed.
    pub requeue_min: Duration,
    pub requeue_max: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            debounce: Duration::from_millis(100),
            requeue_min: Duration::from_secs(1),
            requeue_max: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<Context>,
    scope: Scope,
    strategy: Arc<dyn Strategy>,
    incidents: Arc<IncidentStore>,
    notifier: Notifier,
    metrics: Metrics,
    config: EngineConfig,
    state: Mutex<State>,
    seq: AtomicU64,
    /// Cancelled when shutdown begins: no new work, sleeping retries end.
    stopping: CancellationToken,
    /// Cancelled when the drain time is up: runs still in flight are interrupted.
    abort: CancellationToken,
    tasks: TaskTracker,
}

struct State {
    accepting: bool,
    services: HashMap<String, Slot>,
    /// Replica name -> id of the run healing it.
    claims: HashMap<String, String>,
    /// Fingerprints of out-of-scope alerts already recorded (bounded).
    out_of_scope_seen: std::collections::VecDeque<u64>,
}

#[derive(Default)]
struct Slot {
    pending: Vec<TriggerRecord>,
    /// A task is collecting triggers and starting runs for this service.
    starting: bool,
    /// Runs of this service in flight.
    running: usize,
    /// The next retry's wait (grows while runs keep failing).
    backoff: Option<Duration>,
    requeue_scheduled: bool,
    /// Fingerprint of the last settled state recorded (no action, gave up...), so that a
    /// repeated alert on an unchanged state is recorded once.
    last_settled: Option<u64>,
}

impl Engine {
    pub fn new(
        ctx: Arc<Context>,
        scope: Scope,
        strategy: Arc<dyn Strategy>,
        incidents: Arc<IncidentStore>,
        notifier: Notifier,
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
                notifier,
                metrics,
                config,
                state: Mutex::new(State {
                    accepting: true,
                    services: HashMap::new(),
                    claims: HashMap::new(),
                    out_of_scope_seen: Default::default(),
                }),
                seq,
                stopping: CancellationToken::new(),
                abort: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn scope(&self) -> &Scope {
        &self.inner.scope
    }

    pub fn strategy(&self) -> &Arc<dyn Strategy> {
        &self.inner.strategy
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.inner.ctx
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave it in a state worse than stale; keep going.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a look at `service`. Returns false (and does nothing) when the service is not one
    /// the agent may heal. Never blocks on the run.
    pub fn trigger(&self, service: &str, trigger: TriggerRecord) -> bool {
        let Some(service) = self.inner.scope.service(service).map(str::to_string) else {
            return false;
        };
        self.inner
            .metrics
            .triggers
            .with_label_values(&[trigger.kind.as_str()])
            .inc();
        let mut state = self.state();
        if !state.accepting {
            return true;
        }
        let slot = state.services.entry(service.clone()).or_default();
        let duplicate = slot.pending.iter().any(|p| {
            p.kind == trigger.kind && p.name == trigger.name && p.container == trigger.container
        });
        if slot.pending.is_empty() || (!duplicate && slot.pending.len() < MAX_PENDING) {
            slot.pending.push(trigger);
        }
        if !slot.starting {
            slot.starting = true;
            let engine = self.clone();
            self.inner
                .tasks
                .spawn(async move { engine.starter(service).await });
        }
        true
    }

    /// Looks at every healable service (start-up, the periodic resync, an events re-list).
    pub fn reconcile_all(&self, kind: TriggerKind, why: &str) {
        let now = self.inner.ctx.clock.now();
        let services: Vec<String> = self.inner.scope.services().map(str::to_string).collect();
        for s in services {
            self.trigger(&s, TriggerRecord::internal(kind, why, now));
        }
    }

    /// Collects the triggers of `service` and starts runs until none are pending.
    async fn starter(self, service: String) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.debounce) => {}
                _ = self.inner.stopping.cancelled() => {}
            }
            let triggers = {
                let mut state = self.state();
                let accepting = state.accepting;
                let slot = state.services.entry(service.clone()).or_default();
                if slot.pending.is_empty() || !accepting {
                    slot.starting = false;
                    slot.pending.clear();
                    return;
                }
                std::mem::take(&mut slot.pending)
            };
            self.start(&service, triggers).await;
        }
    }

    fn next_id(&self, service: &str) -> String {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        format!(
            "{}-{service}-{n:05}",
            self.inner.ctx.clock.now().format("%Y%m%dT%H%M%SZ")
        )
    }

    /// Records an incident (the log, metrics, a notification) and remembers nothing else.
    async fn record(&self, mut incident: Incident) {
        let m = &self.inner.metrics;
        m.incidents
            .with_label_values(&[incident.outcome.as_str(), incident.mode.as_str()])
            .inc();
        if let Some(mttr) = incident
            .mttr_seconds
            .filter(|_| incident.outcome == crate::incidents::Outcome::Healed)
        {
            m.time_to_recovery
                .with_label_values(&[incident.service.as_str()])
                .observe(mttr);
        }
        if let Some(e) = &incident.escalation {
            m.escalations.with_label_values(&[e.reason.as_str()]).inc();
        }
        if let Some(event) = self.inner.notifier.send(&incident) {
            incident.notifications.push(event.to_string());
        }
        if self.inner.scope.service(&incident.service).is_some() {
            let open = self
                .inner
                .ctx
                .budget
                .open_breakers(&incident.service, self.inner.ctx.clock.now());
            m.circuit_breakers_open
                .with_label_values(&[incident.service.as_str()])
                .set(open as i64);
        }
        tracing::info!(id = %incident.id, service = %incident.service, outcome = incident.outcome.as_str(), class = incident.class.as_str(), mode = incident.mode.as_str(), summary = %incident.summary, "incident recorded");
        // A failed append is logged, counted and kept for the next write by the store itself.
        let _ = self.inner.incidents.append(incident).await;
    }

    /// Schedules a retry of `service` after its current backoff (doubling up to the maximum).
    fn requeue(&self, service: &str) {
        let wait = {
            let mut state = self.state();
            if !state.accepting {
                return;
            }
            let cfg = &self.inner.config;
            let slot = state.services.entry(service.to_string()).or_default();
            let wait = slot.backoff.unwrap_or(cfg.requeue_min);
            slot.backoff = Some((wait * 2).min(cfg.requeue_max));
            if slot.requeue_scheduled {
                return;
            }
            slot.requeue_scheduled = true;
            wait
        };
        self.inner
            .metrics
            .requeues
            .with_label_values(&[service])
            .inc();
        tracing::info!(service, wait_ms = wait.as_millis() as u64, "requeued");
        let engine = self.clone();
        let service = service.to_string();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = engine.inner.stopping.cancelled() => return,
            }
            engine
                .state()
                .services
                .entry(service.clone())
                .or_default()
                .requeue_scheduled = false;
            let now = engine.inner.ctx.clock.now();
            engine.trigger(
                &service,
                TriggerRecord::internal(TriggerKind::Requeue, "retry after a failed run", now),
            );
        });
    }

    /// A run or a look ended well: the next failure starts the backoff again.
    fn settle_backoff(&self, service: &str) {
        if let Some(slot) = self.state().services.get_mut(service) {
            slot.backoff = None;
        }
    }

    /// True while any look or run is queued or in flight.
    pub fn busy(&self) -> bool {
        self.state()
            .services
            .values()
            .any(|s| s.starting || s.running > 0)
    }

    /// Waits until no look or run is queued or in flight (tests), at most `timeout`.
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

    /// Stops taking work, lets runs in flight finish for up to `drain`, then interrupts the rest
    /// (each still leaves an incident, `interrupted`). Returns false when runs were interrupted.
    pub async fn shutdown(&self, drain: Duration) -> bool {
        self.state().accepting = false;
        self.inner.stopping.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(drain, self.inner.tasks.wait())
            .await
            .is_ok()
        {
            return true;
        }
        tracing::warn!(
            drain_s = drain.as_secs(),
            "healing runs still in flight at the end of the drain time; interrupting them"
        );
        self.inner.abort.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.tasks.wait()).await;
        false
    }

    /// Forgets an operator-reset replica's budget and history, and looks at every service again.
    pub fn reset(&self, replica: &str) -> bool {
        let budget = self.inner.ctx.budget.reset(replica);
        let history = self.inner.ctx.history.reset(replica);
        {
            let mut state = self.state();
            for slot in state.services.values_mut() {
                slot.last_settled = None;
            }
        }
        self.reconcile_all(TriggerKind::Operator, "operator reset");
        budget || history
    }
}

#[cfg(test)]
mod tests;
