//! The healing engine: a controller in the kube-runtime mould.
//!
//! - Triggers (alerts, Docker events, the periodic resync, start-up, retries) name a service;
//!   anything outside the [`Scope`] is recorded as out of scope (grouped, deduplicated, rate
//!   limited) and never acted on.
//! - Triggers are coalesced (debounce), then the service is observed from live state and each
//!   replica diagnosed ([`crate::diagnosis`]); [`plan`] asks the one policy about every replica,
//!   on facts gathered once, whether a run is worth starting at all.
//! - The unit of exclusivity is the replica, by container id: a run claims the replicas it heals,
//!   and a trigger that arrives while a run is in flight starts a new run at once for the
//!   replicas nobody claimed. So the death of a second replica is never stuck behind a slow model
//!   conversation about the first, and no replica is ever acted on by two runs at once.
//! - A run returns what happens next: done, or requeue after a backoff (failed, Docker
//!   unreachable). A replica given up on is escalated once and left alone, quietly, until it
//!   changes or its next quiet try.
//! - Escalations are told once ([`escalations`]); `/healthz` and the metrics report a degraded
//!   service ([`health`]).
//! - Runs and the per-service starter are supervised: a panic is caught, logged, counted,
//!   recorded, claims released and the service requeued. On shutdown, runs get `DRAIN_TIMEOUT` to
//!   finish; the rest are recorded `interrupted`.

mod draft;
pub mod escalations;
mod events;
mod health;
mod out_of_scope;
mod plan;
mod recycle;
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
pub use health::ServiceHealth;
pub use out_of_scope::OutOfScopeAlert;
pub use recycle::{watch_memory, RecycleConfig, Recycled, Why, LABEL as RECYCLE_LABEL};
pub use strategy::{Brief, Runbook, Strategy, StrategyReport};

use crate::context::Context;
use crate::incidents::{
    EscalationReason, Incident, IncidentStore, Outcome, TriggerKind, TriggerRecord,
};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::scope::Scope;
use escalations::{Escalations, Key};

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
    escalations: Escalations,
    /// Preventive recycling: its configuration, the services busy, trends and timings.
    recycles: recycle::Recycles,
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
    /// Container id -> id of the run healing it.
    claims: HashMap<String, String>,
    /// Run id -> triggers that arrived while that run held every replica they were about: they
    /// join its incident (an alert a few ms after the death event is still recorded, with its
    /// annotations).
    joined: HashMap<String, Vec<TriggerRecord>>,
    out_of_scope: out_of_scope::Seen,
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
    /// When the scheduled looks fire (a retry, a quiet try at a replica given up on).
    wakeups: Vec<tokio::time::Instant>,
    /// Fingerprint of the last settled state recorded (no action, gave up...), so that a
    /// repeated alert on an unchanged state is recorded once.
    last_settled: Option<u64>,
    /// What the last look found, for `/healthz` and the metrics.
    health: ServiceHealth,
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
                    joined: HashMap::new(),
                    out_of_scope: Default::default(),
                }),
                escalations: Escalations::default(),
                recycles: Default::default(),
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
        let duplicate = slot.pending.iter().any(|p| run::same_trigger(p, &trigger));
        if slot.pending.is_empty() || (!duplicate && slot.pending.len() < MAX_PENDING) {
            slot.pending.push(trigger);
        }
        if !slot.starting {
            slot.starting = true;
            self.spawn_starter(service);
        }
        true
    }

    /// Triggers about replicas that runs in flight hold: they join those runs' incidents
    /// (recorded when each run ends), bounded like the pending triggers.
    /// A run that ended meanwhile (between the look and now) recorded already: then the
    /// triggers are looked at again instead, and recorded by that look.
    fn join(&self, service: &str, runs: &[String], triggers: Vec<TriggerRecord>) {
        let mut joined_any = false;
        {
            let mut state = self.state();
            for run in runs {
                if !state.claims.values().any(|r| r == run) {
                    continue;
                }
                joined_any = true;
                let joined = state.joined.entry(run.clone()).or_default();
                for t in &triggers {
                    if joined.len() < MAX_PENDING && !joined.iter().any(|x| run::same_trigger(x, t))
                    {
                        joined.push(t.clone());
                    }
                }
            }
        }
        if !joined_any {
            for t in triggers {
                self.trigger(service, t);
            }
        }
    }

    /// Looks at every healable service (start-up, the periodic resync, an events re-list).
    pub fn reconcile_all(&self, kind: TriggerKind, why: &str) {
        let now = self.inner.ctx.clock.now();
        let services: Vec<String> = self.inner.scope.services().map(str::to_string).collect();
        for s in services {
            self.trigger(&s, TriggerRecord::internal(kind, why, now));
        }
    }

    /// The starter of `service`, supervised: a panic while it observes or plans is caught,
    /// counted, and the service looked at again (its triggers were taken; the retry stands for
    /// them).
    fn spawn_starter(&self, service: String) {
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            let work = tokio::spawn(engine.clone().starter(service.clone()));
            if let Err(e) = work.await {
                let what = if e.is_panic() {
                    crate::supervise::panic_message(e.into_panic())
                } else {
                    "cancelled".to_string()
                };
                engine
                    .inner
                    .metrics
                    .task_panics
                    .with_label_values(&["starter"])
                    .inc();
                tracing::error!(service = %service, error = %what, "the look at a service ended abnormally; it is looked at again");
                if let Some(slot) = engine.state().services.get_mut(&service) {
                    slot.starting = false;
                }
                engine.requeue(&service);
            }
        });
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

    /// The one place an outcome is recorded: escalations are told once (a repeat of an open
    /// one is recorded without it, or not at all when nothing was done), notifications go out
    /// unless an open escalation already covers them, then metrics and the incident log.
    /// `acted`: the run changed something (a record worth keeping whatever else).
    async fn record(&self, incident: Incident, acted: bool) {
        let mut incident = incident.bounded();
        let m = &self.inner.metrics;
        let now = self.inner.ctx.clock.now();
        let mut told_already = false;
        if let Some(e) = incident.escalation.clone() {
            let fresh = self.inner.escalations.open(
                &incident.service,
                &e,
                &incident.id,
                &incident.summary,
                now,
            );
            if fresh.is_empty() {
                told_already = true;
                if !acted {
                    m.deduplicated
                        .with_label_values(&[incident.service.as_str()])
                        .inc();
                    tracing::debug!(id = %incident.id, reason = e.reason.as_str(), "escalated already; the agent stays quiet");
                    return;
                }
                incident.escalation = None;
            } else {
                m.escalations.with_label_values(&[e.reason.as_str()]).inc();
            }
        }
        let recurring = self.inner.escalations.is_open(&Key::Service {
            service: incident.service.clone(),
            reason: EscalationReason::Recurrence,
        });
        let covered = told_already
            || (recurring
                && incident.escalation.is_none()
                && matches!(incident.outcome, Outcome::Healed | Outcome::Failed));
        if covered {
            if let Some(event) = crate::notify::event_of(&incident) {
                m.notifications
                    .with_label_values(&[event, "suppressed"])
                    .inc();
            }
        } else if let Some(event) = self.inner.notifier.send(&incident) {
            incident.notifications.push(event.to_string());
        }
        m.incidents
            .with_label_values(&[incident.outcome.as_str(), incident.mode.as_str()])
            .inc();
        if let Some(mttr) = incident
            .mttr_seconds
            .filter(|_| incident.outcome == Outcome::Healed)
        {
            m.time_to_recovery
                .with_label_values(&[incident.service.as_str()])
                .observe(mttr);
        }
        if self.inner.scope.service(&incident.service).is_some() {
            self.publish_health(&incident.service);
        }
        tracing::info!(id = %incident.id, service = %incident.service, outcome = incident.outcome.as_str(), class = incident.class.as_str(), mode = incident.mode.as_str(), summary = %incident.summary, "incident recorded");
        // A failed append is logged, counted and kept for the next write by the store itself.
        let _ = self.inner.incidents.append(incident).await;
    }

    /// Schedules a retry of `service` after its current backoff (doubling up to the maximum).
    fn requeue(&self, service: &str) {
        let wait = {
            let mut state = self.state();
            let cfg = &self.inner.config;
            let slot = state.services.entry(service.to_string()).or_default();
            let wait = slot.backoff.unwrap_or(cfg.requeue_min);
            slot.backoff = Some((wait * 2).min(cfg.requeue_max));
            wait
        };
        self.inner
            .metrics
            .requeues
            .with_label_values(&[service])
            .inc();
        tracing::info!(service, wait_ms = wait.as_millis() as u64, "requeued");
        self.requeue_after(service, wait, "retry after a failed run");
    }

    /// A look at `service` after `wait`, unless one is scheduled already within the second
    /// before (a burst of failures schedules one look, not one each).
    fn requeue_after(&self, service: &str, wait: Duration, why: &'static str) {
        let at = tokio::time::Instant::now() + wait;
        {
            let mut state = self.state();
            if !state.accepting {
                return;
            }
            let slot = state.services.entry(service.to_string()).or_default();
            if slot
                .wakeups
                .iter()
                .any(|t| *t <= at && at - *t <= Duration::from_secs(1))
            {
                return;
            }
            // Bounded: a few retries and quiet tries at most are ever pending.
            if slot.wakeups.len() >= 16 {
                slot.wakeups.sort();
                slot.wakeups.pop();
            }
            slot.wakeups.push(at);
        }
        let engine = self.clone();
        let service = service.to_string();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = engine.inner.stopping.cancelled() => return,
            }
            {
                let mut state = engine.state();
                let slot = state.services.entry(service.clone()).or_default();
                let Some(i) = slot.wakeups.iter().position(|t| *t == at) else {
                    // Dropped for a sooner one.
                    return;
                };
                slot.wakeups.swap_remove(i);
            }
            let now = engine.inner.ctx.clock.now();
            engine.trigger(
                &service,
                TriggerRecord::internal(TriggerKind::Requeue, why, now),
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

    /// Forgets everything about an operator-reset replica (backoff, tries, deaths, the give-up
    /// and its escalation), and looks at every service again.
    pub fn reset(&self, replica: &str) -> bool {
        let forgotten = self.inner.ctx.ledger.reset(replica);
        let closed = self
            .inner
            .escalations
            .close_where(|k| matches!(k, Key::Replica { replica: r, .. } if r == replica));
        {
            let mut state = self.state();
            for slot in state.services.values_mut() {
                slot.last_settled = None;
            }
        }
        self.reconcile_all(TriggerKind::Operator, "operator reset");
        forgotten || closed > 0
    }

    /// The periodic upkeep (the resync loop): what aged out is forgotten, recurrences quiet for
    /// a whole window are closed, and the health metrics are published again.
    pub fn tick(&self) {
        let now = self.inner.ctx.clock.now();
        self.inner.ctx.ledger.prune(now);
        let services: Vec<String> = self.inner.scope.services().map(str::to_string).collect();
        for s in &services {
            self.close_quiet_recurrence(s, now);
            self.publish_health(s);
        }
    }
}
