//! Preventive recycling: replacing a serving replica before it fails, one at a time, drained
//! first, so that users see nothing.
//!
//! - The memory watcher ([`watch_memory`], a supervised background loop) looks at every opted-in
//!   service once a [`RecycleConfig::every`]: each replica's memory through Docker's stats (what
//!   the kernel's OOM killer compares against the limit, with no scrape or evaluation delay),
//!   the trend of the current life ([`crate::trend`]), and asks the one pure decision,
//!   [`crate::policy::recycle::decide`].
//! - A recycle ([`Engine::recycle_replica`]): the replica is claimed like a healing run claims
//!   it (so the engine leaves it alone while it is down on purpose), marked as the agent's own
//!   stop, stopped gracefully (SIGTERM, the webapp drains and exits 0; the stop timeout bounds
//!   one that does not), started, and counts only when its healthcheck passes. It is recorded as
//!   an incident of its own kind, `recycled`, with the figures that led to it, and counted in
//!   `healing_recycles_total`, never as a death or a repair (the ledger does not see it).
//! - `POST /recycle/{service}` ([`Engine::rolling_restart`]): the same, for every replica in turn.
//!
//! Opt-in: `PREVENTIVE_RECYCLE=on` for every healable service, or the label
//! `healstack.recycle=memory` on a service's containers. A service whose action level is notify
//! or off is never recycled.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::draft::Draft;
use super::Engine;
use crate::incidents::{
    ActionLevel, ActionRecord, Escalation, EscalationReason, FailureClass, Mode, Outcome,
    RecycleRecord, TriggerKind, TriggerRecord,
};
use crate::persist::lock;
use crate::policy::recycle::{self, Behind, MemoryFigures, RecycleDecision, RecycleFacts};
use crate::runtime::{ContainerRef, RuntimeError};
use crate::trend::Trends;

/// The label that opts a service in (on its containers).
pub const LABEL: &str = "healstack.recycle";
/// The slowest recycle assumed before one was measured.
pub const PRIOR_RECYCLE: Duration = Duration::from_secs(5);
/// Recycles remembered per service for "the slowest so far" (a change of machine or load ages
/// out).
const KEEP_DURATIONS: usize = 20;
/// A "cannot keep up" escalation closes after this long without another late recycle.
const BEHIND_QUIET: chrono::Duration = chrono::Duration::minutes(10);
/// How often a recycled replica is looked at until it serves.
const POLL: Duration = Duration::from_millis(200);
/// Attempts at starting a recycled replica Docker refuses to start.
const START_TRIES: u32 = 3;

#[derive(Debug, Clone)]
pub struct RecycleConfig {
    /// `PREVENTIVE_RECYCLE`: every healable service, not only the labelled ones.
    pub all_services: bool,
    /// How often the watcher looks at memory.
    pub every: Duration,
    /// The stop timeout given with SIGTERM (compose's `stop_grace_period` for the webapp).
    pub stop_timeout_secs: u32,
}

impl Default for RecycleConfig {
    fn default() -> Self {
        RecycleConfig {
            all_services: false,
            every: Duration::from_secs(1),
            stop_timeout_secs: 8,
        }
    }
}

/// Why a replica is recycled.
#[derive(Debug, Clone)]
pub enum Why {
    Memory { figures: MemoryFigures },
    Operator,
}

impl Why {
    fn as_str(&self) -> &'static str {
        match self {
            Why::Memory { .. } => "memory",
            Why::Operator => "operator",
        }
    }
}

/// What the recycler keeps between looks.
#[derive(Default)]
pub(super) struct Recycles {
    config: Mutex<RecycleConfig>,
    state: Mutex<RecycleState>,
    /// A recycle ended: the watcher looks again at once rather than at its next tick, so that
    /// the next replica due is not kept waiting for the clock (one at a time, back to back).
    ended: tokio::sync::Notify,
}

#[derive(Default)]
struct RecycleState {
    /// Services with a recycle (or a rolling restart) in flight.
    busy: HashSet<String>,
    /// Recent recycle durations per service, seconds (SIGTERM to healthy).
    durations: HashMap<String, VecDeque<f64>>,
    trends: Trends,
    /// The last late recycle per service (an open "cannot keep up" escalation).
    behind_at: HashMap<String, DateTime<Utc>>,
    /// A miss predicted per service, since when, not yet borne out by a death.
    behind_pending: HashMap<String, (DateTime<Utc>, Behind)>,
}

/// Marks a service busy until dropped.
struct BusyGuard {
    engine: Engine,
    service: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        lock(&self.engine.inner.recycles.state)
            .busy
            .remove(&self.service);
    }
}

/// The outcome of one recycle.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recycled {
    pub replica: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Engine {
    pub fn configure_recycle(&self, config: RecycleConfig) {
        *lock(&self.inner.recycles.config) = config;
    }

    pub fn recycle_config(&self) -> RecycleConfig {
        lock(&self.inner.recycles.config).clone()
    }

    /// The slowest recycle of `service` measured so far (or the prior).
    pub fn slowest_recycle(&self, service: &str) -> Duration {
        lock(&self.inner.recycles.state)
            .durations
            .get(service)
            .and_then(|d| d.iter().copied().reduce(f64::max))
            .map(Duration::from_secs_f64)
            .unwrap_or(PRIOR_RECYCLE)
    }

    /// Services with a recycle (or a rolling restart) in flight, sorted.
    pub fn recycling(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.inner.recycles.state)
            .busy
            .iter()
            .cloned()
            .collect();
        v.sort();
        v
    }

    fn try_busy(&self, service: &str) -> Option<BusyGuard> {
        lock(&self.inner.recycles.state)
            .busy
            .insert(service.to_string())
            .then(|| BusyGuard {
                engine: self.clone(),
                service: service.to_string(),
            })
    }

    /// One look at the memory of `service`'s replicas, and the recycle it calls for (started in
    /// the background; the next look sees the service busy). Returns the ids listed.
    pub async fn look_at_memory(&self, service: &str) -> Vec<String> {
        let ctx = self.inner.ctx.clone();
        let project = self.inner.scope.project().to_string();
        let config = self.recycle_config();
        let Ok(list) = ctx.runtime.list(&project, service).await else {
            return Vec::new();
        };
        let ids: Vec<String> = list.iter().map(|c| c.id.clone()).collect();
        let opted_in = config.all_services
            || list
                .iter()
                .any(|c| c.labels.get(LABEL).is_some_and(|v| v == "memory"));
        if !opted_in || list.is_empty() || ctx.dry_run {
            return ids;
        }
        if crate::diagnosis::action_level(&list) != ActionLevel::Auto {
            return ids;
        }
        // The state and a memory reading of every replica at once (a reading takes up to a
        // second: Docker answers it at its next collection).
        let states = futures_util::future::join_all(list.iter().map(|c| {
            let rt = ctx.runtime.clone();
            async move {
                let (state, memory) = tokio::join!(rt.inspect(c, false), rt.memory(c));
                state.map(|mut s| {
                    s.memory_usage = memory.ok().flatten();
                    s
                })
            }
        }))
        .await;
        let now = ctx.clock.now();
        let claimed = {
            let state = self.state();
            list.iter().any(|c| state.claims.contains_key(&c.id))
        };
        let mut replicas = Vec::with_capacity(list.len());
        {
            let mut st = lock(&self.inner.recycles.state);
            for (c, s) in list.iter().zip(&states) {
                let Ok(s) = s else {
                    // Not known: count it as not serving (capacity decides conservatively).
                    replicas.push(recycle::ReplicaMemory {
                        name: c.name.clone(),
                        serving: false,
                        usage: None,
                        limit: None,
                        trend: None,
                    });
                    continue;
                };
                let trend = s
                    .memory_usage
                    .and_then(|u| st.trends.observe(&c.id, s.started_at, now, u));
                replicas.push(recycle::ReplicaMemory {
                    name: c.name.clone(),
                    serving: s.is_serving(),
                    usage: s.memory_usage,
                    limit: s.memory_limit,
                    trend,
                });
            }
            if let Some(at) = st.behind_at.get(service).copied() {
                if now - at > BEHIND_QUIET {
                    st.behind_at.remove(service);
                    drop(st);
                    self.inner.escalations.close_where(|k| {
                        matches!(k, super::escalations::Key::Service { service: s, reason: EscalationReason::RecycleBehind } if s == service)
                    });
                }
            }
        }
        if let Some(b) = self.behind_borne_out(service, now) {
            self.escalate_behind(service, b).await;
        }
        let busy = claimed || lock(&self.inner.recycles.state).busy.contains(service);
        let facts = RecycleFacts {
            replicas: &replicas,
            busy,
            slowest: self.slowest_recycle(service),
            every: config.every,
        };
        match recycle::decide(&facts) {
            RecycleDecision::Idle => {}
            RecycleDecision::Hold(why) => {
                tracing::debug!(service, %why, "a recycle is due but waits");
            }
            RecycleDecision::Recycle {
                name,
                figures,
                behind,
            } => {
                let Some(target) = list.iter().find(|c| c.name == name).cloned() else {
                    return ids;
                };
                self.note_behind(service, behind, now);
                let Some(busy) = self.try_busy(service) else {
                    return ids;
                };
                let engine = self.clone();
                let service = service.to_string();
                self.inner.tasks.spawn(async move {
                    engine
                        .recycle_replica(&service, &target, Why::Memory { figures })
                        .await;
                    drop(busy);
                    engine.inner.recycles.ended.notify_one();
                });
            }
        }
        ids
    }

    /// Keeps a predicted miss (`behind`) until a death bears it out or [`BEHIND_QUIET`] passes.
    fn note_behind(&self, service: &str, behind: Option<Behind>, now: DateTime<Utc>) {
        if let Some(b) = behind {
            lock(&self.inner.recycles.state)
                .behind_pending
                .entry(service.to_string())
                .or_insert((now, b));
        }
    }

    /// A predicted miss borne out: a death the agent healed after the prediction. Replicas
    /// started together fill together, so the first recycles after a start often predict a
    /// miss for the last in line that the schedule then makes up; escalating on the prediction
    /// alone told people of a problem on every start. A death after it is a replica the
    /// recycles did not reach in time.
    fn behind_borne_out(&self, service: &str, now: DateTime<Utc>) -> Option<Behind> {
        let last_death = self.inner.ctx.ledger.history().last_death(service);
        let mut st = lock(&self.inner.recycles.state);
        let (since, _) = st.behind_pending.get(service)?;
        if now - *since > BEHIND_QUIET {
            st.behind_pending.remove(service);
            return None;
        }
        if last_death.is_some_and(|d| d > *since) {
            return st.behind_pending.remove(service).map(|(_, b)| b);
        }
        None
    }

    fn behind_escalation(&self, service: &str, b: &Behind) -> Escalation {
        Escalation {
            reason: EscalationReason::RecycleBehind,
            detail: format!(
                "preventive recycling cannot keep up: {} would reach its memory limit in {:.1} s, while recycling it (and those before it) takes {:.1} s at the slowest recycle measured ({:.1} s); the replicas leak {:.1} MiB/s each; {} replicas. Replicas the recycles miss are OOM-killed and healed reactively. Add replicas or memory, or lower the load",
                b.replica,
                b.seconds_to_limit,
                b.seconds_needed,
                self.slowest_recycle(service).as_secs_f64(),
                b.leak_bytes_per_second / (1024.0 * 1024.0),
                b.replicas
            ),
            replicas: vec![b.replica.clone()],
            count: 1,
            figures: None,
        }
    }

    /// Tells people once that recycling cannot keep up (an incident of its own: the deaths
    /// were healed by their own runs).
    async fn escalate_behind(&self, service: &str, b: Behind) {
        let ctx = &self.inner.ctx;
        let now = ctx.clock.now();
        lock(&self.inner.recycles.state)
            .behind_at
            .insert(service.to_string(), now);
        let escalation = self.behind_escalation(service, &b);
        let id = self.next_id(service);
        let draft = Draft::new(
            &id,
            service,
            self.inner.scope.project(),
            vec![TriggerRecord::internal(
                TriggerKind::Memory,
                "a replica died before its recycle",
                now,
            )],
            Mode::Runbook,
            now,
        );
        let summary = format!(
            "preventive recycling of {service} cannot keep up: {} died before its recycle; reactive healing takes what the recycles miss",
            b.replica
        );
        let mut incident = draft.close(
            Outcome::Notified,
            FailureClass::OomKilled,
            None,
            summary,
            Vec::new(),
            Some(escalation),
            None,
        );
        incident.mttr_seconds = None;
        self.record(incident, false).await;
    }

    /// Recycles one replica: claimed, stopped gracefully, started, healthy again; recorded.
    /// The caller holds the service's busy mark.
    pub async fn recycle_replica(
        &self,
        service: &str,
        target: &ContainerRef,
        why: Why,
    ) -> Recycled {
        let ctx = self.inner.ctx.clone();
        let id = self.next_id(service);
        {
            let mut state = self.state();
            if state.claims.contains_key(&target.id) {
                return Recycled {
                    replica: target.name.clone(),
                    ok: false,
                    seconds: None,
                    error: Some("being healed by a run".into()),
                };
            }
            state.claims.insert(target.id.clone(), id.clone());
        }
        let at = ctx.clock.now();
        let trigger = TriggerRecord {
            kind: match why {
                Why::Memory { .. } => TriggerKind::Memory,
                Why::Operator => TriggerKind::Operator,
            },
            name: match &why {
                Why::Memory { .. } => "memory near its limit".into(),
                Why::Operator => "POST /recycle".into(),
            },
            at,
            container: Some(target.name.clone()),
            summary: None,
        };
        let draft = Draft::new(
            &id,
            service,
            self.inner.scope.project(),
            vec![trigger],
            Mode::Runbook,
            at,
        );
        let timeout = self.recycle_config().stop_timeout_secs;
        let began = Instant::now();
        let mut timeline = Vec::new();
        let step = |action: &str, result: &str, detail: serde_json::Value| ActionRecord {
            at: ctx.clock.now(),
            action: action.into(),
            target: Some(target.name.clone()),
            args: serde_json::Value::Null,
            result: result.into(),
            detail,
            by: "agent".into(),
        };
        ctx.stops.begin_own(&target.id, at);
        let result = self.stop_and_start(target, timeout).await;
        let stop_seconds = result.as_ref().map(|r| r.0).unwrap_or_default();
        let exit_code = result.as_ref().ok().and_then(|r| r.1);
        let mut healthy_after = None;
        let mut new_start = None;
        let error = match result {
            Err(e) => {
                timeline.push(step("recycle", "error", json!({ "error": e.to_string() })));
                Some(e.to_string())
            }
            Ok(_) => {
                timeline.push(step(
                    "stop",
                    "ok",
                    json!({ "timeout_s": timeout, "exit_code": exit_code, "seconds": round(stop_seconds) }),
                ));
                timeline.push(step("start", "ok", serde_json::Value::Null));
                match self.wait_healthy(target, at).await {
                    Some(started) => {
                        new_start = Some(started);
                        let s = began.elapsed().as_secs_f64();
                        healthy_after = Some(s);
                        timeline.push(step("verify", "ok", json!({ "healthy_after_s": round(s) })));
                        None
                    }
                    None => {
                        timeline.push(step(
                            "verify",
                            "error",
                            json!({ "note": "not serving when the wait ended" }),
                        ));
                        Some(format!(
                            "not serving {} s after its recycle",
                            ctx.verify_timeout.as_secs()
                        ))
                    }
                }
            }
        };
        ctx.stops
            .end_own(&target.id, new_start.unwrap_or_else(|| ctx.clock.now()));
        {
            let mut state = self.state();
            if state.claims.get(&target.id) == Some(&id) {
                state.claims.remove(&target.id);
            }
        }
        let killed = exit_code.is_some_and(|c| c != 0);
        let result_label = match (&error, killed) {
            (Some(_), _) => "failed",
            (None, true) => "killed",
            (None, false) => "drained",
        };
        ctx.metrics
            .recycles
            .with_label_values(&[service, why.as_str(), result_label])
            .inc();
        if let Some(s) = healthy_after {
            ctx.metrics
                .recycle_duration
                .with_label_values(&[service])
                .observe(s);
            let mut st = lock(&self.inner.recycles.state);
            let d = st.durations.entry(service.to_string()).or_default();
            if d.len() >= KEEP_DURATIONS {
                d.pop_front();
            }
            d.push_back(s);
        }
        let memory = match &why {
            Why::Memory { figures } => Some(figures.clone()),
            Why::Operator => None,
        };
        let summary = match (&error, &memory) {
            (Some(e), _) => format!("recycle of {} failed: {e}; reactive healing takes over", target.name),
            (None, Some(m)) => format!(
                "recycled {} at {:.0} of {:.0} MiB ({:+.1} MiB/s{}): {}, serving again after {:.1} s",
                target.name,
                m.usage_bytes as f64 / 1048576.0,
                m.limit_bytes as f64 / 1048576.0,
                m.trend_bytes_per_second / 1048576.0,
                m.seconds_to_limit
                    .map(|t| format!(", {t:.0} s to the limit"))
                    .unwrap_or_default(),
                if killed { "killed at the stop timeout" } else { "drained" },
                healthy_after.unwrap_or_default()
            ),
            (None, None) => format!(
                "recycled {} on request: {}, serving again after {:.1} s",
                target.name,
                if killed { "killed at the stop timeout" } else { "drained" },
                healthy_after.unwrap_or_default()
            ),
        };
        tracing::info!(service, replica = %target.name, reason = why.as_str(), result = result_label, seconds = healthy_after, "{summary}");
        let mut incident = draft.close(
            if error.is_some() {
                Outcome::Failed
            } else {
                Outcome::Recycled
            },
            FailureClass::NotDown,
            new_start.map(|_| ctx.clock.now()),
            summary,
            timeline,
            None,
            None,
        );
        incident.mttr_seconds = None;
        incident.recycle = Some(RecycleRecord {
            replica: target.name.clone(),
            reason: why.as_str().into(),
            memory,
            stop_timeout_seconds: timeout,
            exit_code,
            stop_seconds: round(stop_seconds),
            healthy_after_seconds: healthy_after.map(round),
        });
        self.record(incident, true).await;
        if error.is_some() {
            // Whatever state it is in now, the engine's look decides (start it, or more).
            self.trigger(
                service,
                TriggerRecord::internal(
                    TriggerKind::Requeue,
                    "a recycle did not serve again",
                    ctx.clock.now(),
                ),
            );
        }
        Recycled {
            replica: target.name.clone(),
            ok: error.is_none(),
            seconds: healthy_after.map(round),
            error,
        }
    }

    /// The graceful stop and the start; returns the seconds the stop took and the exit code.
    async fn stop_and_start(
        &self,
        target: &ContainerRef,
        timeout: u32,
    ) -> Result<(f64, Option<i64>), RuntimeError> {
        let rt = &self.inner.ctx.runtime;
        let t = Instant::now();
        rt.stop(&target.name, timeout).await?;
        let stop_seconds = t.elapsed().as_secs_f64();
        let exit_code = rt
            .inspect(target, false)
            .await
            .ok()
            .and_then(|s| s.exit_code);
        let mut tries = 0;
        loop {
            tries += 1;
            match rt.start(&target.name).await {
                Ok(()) => return Ok((stop_seconds, exit_code)),
                Err(RuntimeError::Api(m)) if tries < START_TRIES => {
                    tracing::warn!(replica = %target.name, error = %m, "docker refused to start a recycled replica; trying again");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(tries))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the replica serves in a life started after `at`; returns that start.
    async fn wait_healthy(
        &self,
        target: &ContainerRef,
        at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let ctx = &self.inner.ctx;
        let deadline = tokio::time::Instant::now() + ctx.verify_timeout;
        loop {
            if let Ok(s) = ctx.runtime.inspect(target, false).await {
                if s.is_serving() && s.started_at.is_some_and(|t| t >= at) {
                    return s.started_at;
                }
            }
            if tokio::time::Instant::now() + POLL > deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `POST /recycle/{service}`: every replica in turn, each only while all the others serve
    /// (waiting up to the verify timeout for that), one at a time, after any recycle of the
    /// service in flight (waited for as long).
    pub async fn rolling_restart(&self, service: &str) -> Result<Vec<Recycled>, String> {
        let Some(service) = self.inner.scope.service(service).map(str::to_string) else {
            return Err(format!("{service} is not a service this agent heals"));
        };
        // A recycle in flight (the memory watcher's, or another rolling restart) is waited for,
        // up to the verify timeout: one at a time, whoever asked.
        let ctx = self.inner.ctx.clone();
        let deadline = tokio::time::Instant::now() + ctx.verify_timeout;
        let _busy = loop {
            if let Some(b) = self.try_busy(&service) {
                break b;
            }
            if tokio::time::Instant::now() + POLL > deadline {
                return Err(format!(
                    "a recycle of {service} was still in flight after {} s",
                    ctx.verify_timeout.as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        };
        let project = self.inner.scope.project().to_string();
        let list = ctx
            .runtime
            .list(&project, &service)
            .await
            .map_err(|e| e.to_string())?;
        if list.len() < 2 {
            return Err(format!(
                "{service} has {} replica(s): a rolling restart needs two or more to keep serving",
                list.len()
            ));
        }
        // The fullest first: while the rolling restart holds the service, the memory watcher
        // does not recycle it.
        let memory =
            futures_util::future::join_all(list.iter().map(|c| ctx.runtime.memory(c))).await;
        let mut order: Vec<(u64, &ContainerRef)> = memory
            .into_iter()
            .map(|m| m.ok().flatten().unwrap_or(0))
            .zip(&list)
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.name.cmp(&b.1.name)));
        let mut done = Vec::new();
        for c in order.into_iter().map(|(_, c)| c) {
            if !self.all_serving(&list).await {
                done.push(Recycled {
                    replica: c.name.clone(),
                    ok: false,
                    seconds: None,
                    error: Some(
                        "not every replica serves: stopped here to keep N-1 serving".into(),
                    ),
                });
                break;
            }
            let r = self.recycle_replica(&service, c, Why::Operator).await;
            let ok = r.ok;
            done.push(r);
            if !ok {
                break;
            }
        }
        Ok(done)
    }

    /// Whether every replica serves, waiting up to the verify timeout for it.
    async fn all_serving(&self, list: &[ContainerRef]) -> bool {
        let ctx = &self.inner.ctx;
        let deadline = tokio::time::Instant::now() + ctx.verify_timeout;
        loop {
            let states =
                futures_util::future::join_all(list.iter().map(|c| ctx.runtime.inspect(c, false)))
                    .await;
            let claimed = {
                let state = self.state();
                list.iter().any(|c| state.claims.contains_key(&c.id))
            };
            if !claimed
                && states
                    .iter()
                    .all(|s| s.as_ref().is_ok_and(|s| s.is_serving()))
            {
                return true;
            }
            if tokio::time::Instant::now() + POLL > deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Containers followed by the memory watcher (the bench reads it).
    pub fn followed(&self) -> usize {
        lock(&self.inner.recycles.state).trends.len()
    }
}

/// The memory watcher: every opted-in service, once a `every`, and at once when a recycle
/// ends.
pub async fn watch_memory(engine: Engine) {
    let every = engine.recycle_config().every;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let services: Vec<String> = engine.scope().services().map(str::to_string).collect();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = engine.inner.recycles.ended.notified() => tick.reset(),
        }
        let mut ids = Vec::new();
        for s in &services {
            ids.extend(engine.look_at_memory(s).await);
        }
        // Bounded to the containers still listed (none listed: Docker did not answer; keep).
        if !ids.is_empty() {
            let keep: HashSet<&str> = ids.iter().map(String::as_str).collect();
            lock(&engine.inner.recycles.state).trends.retain(&keep);
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
