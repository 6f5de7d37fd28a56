//! Looking at a service: its replicas from Docker, the agent's own probes, the last log lines of
//! the ones that are down, the service URL; and the diagnosis of each replica ([`classify`]).
//!
//! Everything the engine decides, the runbook does and the model is told starts here, from live
//! state, never from the trigger that woke the agent.

pub mod classify;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;

pub use classify::{diagnose, is_requested_stop, status_str, Evidence, ProbeOutcome};

use crate::stops::Attribution;

use crate::context::Context;
use crate::incidents::{ActionLevel, ProbeRecord, ReplicaDiagnosis};
use crate::runtime::{ContainerRef, ReplicaState, RuntimeError, Status};

/// Log lines kept as evidence for a replica that is down.
pub const LOG_LINES: usize = 20;
/// Bytes of one log line kept.
const LOG_LINE_BYTES: usize = 300;
/// Pause between the two probes of a replica whose first probe failed.
const REPROBE_AFTER: Duration = Duration::from_millis(200);

/// What to gather besides Docker's state.
#[derive(Debug, Clone, Copy)]
pub struct Depth {
    /// Probe each running replica (twice when the first probe fails).
    pub probe: bool,
    /// Fetch the last log lines of replicas that are down.
    pub logs: bool,
    /// A one-shot memory reading of each running replica (slow on a loaded daemon).
    pub memory: bool,
    /// Check the service URL.
    pub service: bool,
}

impl Depth {
    pub const FULL: Depth = Depth {
        probe: true,
        logs: true,
        memory: false,
        service: true,
    };
    pub const STATE_ONLY: Depth = Depth {
        probe: false,
        logs: false,
        memory: false,
        service: false,
    };
}

#[derive(Debug, Clone)]
pub struct Observed {
    pub state: ReplicaState,
    pub diagnosis: ReplicaDiagnosis,
    pub probe: Option<ProbeOutcome>,
}

#[derive(Debug, Clone)]
pub struct Observation {
    /// Sorted by name.
    pub replicas: Vec<Observed>,
    pub service_probe: Option<ProbeRecord>,
    pub level: ActionLevel,
    pub at: DateTime<Utc>,
}

impl Observation {
    pub fn diagnoses(&self) -> Vec<ReplicaDiagnosis> {
        self.replicas.iter().map(|o| o.diagnosis.clone()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&Observed> {
        self.replicas
            .iter()
            .find(|o| o.state.container.name == name)
    }

    /// The service URL was checked and failed.
    pub fn service_failing(&self) -> bool {
        self.service_probe.as_ref().is_some_and(|p| !p.ok)
    }
}

/// The action level the replicas' labels ask for; replicas that disagree get the most careful.
pub fn action_level(replicas: &[ContainerRef]) -> ActionLevel {
    let mut level = ActionLevel::Auto;
    for r in replicas {
        let asked = match r.labels.get(ActionLevel::LABEL) {
            None => ActionLevel::Auto,
            Some(v) => ActionLevel::parse(v).unwrap_or_else(|| {
                tracing::warn!(container = %r.name, value = %v, "unknown {} label value; treating it as notify", ActionLevel::LABEL);
                ActionLevel::Notify
            }),
        };
        level = match (level, asked) {
            (ActionLevel::Off, _) | (_, ActionLevel::Off) => ActionLevel::Off,
            (ActionLevel::Notify, _) | (_, ActionLevel::Notify) => ActionLevel::Notify,
            _ => ActionLevel::Auto,
        };
    }
    level
}

/// Observes every replica of `service` in `project` and diagnoses each.
pub async fn observe(
    ctx: &Context,
    project: &str,
    service: &str,
    depth: Depth,
) -> Result<Observation, RuntimeError> {
    let refs = ctx.runtime.list(project, service).await?;
    let states = join_all(refs.iter().map(|r| ctx.runtime.inspect(r, depth.memory))).await;
    let mut live = Vec::with_capacity(states.len());
    for s in states {
        match s {
            Ok(s) => live.push(s),
            // Removed between list and inspect: no longer ours to heal.
            Err(RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let service_probe = async {
        if depth.service {
            ctx.prober.service().await
        } else {
            None
        }
    };
    let probes = join_all(live.iter().map(|state| async {
        if depth.probe && state.status == Status::Running {
            probe_replica(ctx, state).await
        } else {
            None
        }
    }));
    let (mut probes, service_probe) = tokio::join!(probes, service_probe);
    recheck_unanswered(ctx, depth, &mut live, &mut probes).await;
    discount_unreachable(&live, &mut probes);
    let stops = attribute_stops(ctx, project, &live).await;
    let mut replicas = join_all(
        live.into_iter()
            .zip(probes)
            .zip(stops)
            .map(|((state, probe), stop)| observe_one(ctx, state, probe, stop, depth)),
    )
    .await;
    replicas.sort_by(|a, b| a.state.container.name.cmp(&b.state.container.name));
    Ok(Observation {
        level: action_level(&refs),
        replicas,
        service_probe,
        at: ctx.clock.now(),
    })
}

/// Probes one running replica: once, and again when the first probe fails (one slow answer is
/// not a hang).
pub async fn probe_replica(ctx: &Context, state: &ReplicaState) -> Option<ProbeOutcome> {
    let first = ctx.prober.replica(state).await?;
    if first.ok {
        return Some(ProbeOutcome {
            last: first,
            tries: 1,
            failures: 0,
        });
    }
    tokio::time::sleep(REPROBE_AFTER).await;
    let second = ctx.prober.replica(state).await.unwrap_or(first);
    let failures = 1 + u32::from(!second.ok);
    Some(ProbeOutcome {
        last: second,
        tries: 2,
        failures,
    })
}

/// A replica that answered none of its probes is looked at again before it may be called hung:
/// one killed (or restarted) while it was probed has left the life that was probed, and is
/// diagnosed from the state it is in now, without the probes of a life that is over.
async fn recheck_unanswered(
    ctx: &Context,
    depth: Depth,
    live: &mut [ReplicaState],
    probes: &mut [Option<ProbeOutcome>],
) {
    let unanswered: Vec<usize> = (0..live.len())
        .filter(|&i| probes[i].as_ref().is_some_and(ProbeOutcome::unanswered))
        .collect();
    let again = join_all(
        unanswered
            .iter()
            .map(|&i| ctx.runtime.inspect(&live[i].container, depth.memory)),
    )
    .await;
    for (i, now) in unanswered.into_iter().zip(again) {
        let Ok(now) = now else { continue };
        let probed = &live[i];
        if now.status != probed.status || now.started_at != probed.started_at {
            tracing::info!(
                container = %probed.container.name,
                was = status_str(probed.status),
                now = status_str(now.status),
                "its probes went unanswered because it left that life meanwhile: diagnosed as it is now"
            );
            live[i] = now;
            probes[i] = None;
        }
    }
}

/// When no replica that Docker calls serving answers the agent's probe (two or more of them),
/// the likelier cause is the agent's side (not on their network, a wrong probe port): the probes
/// are kept as evidence but not counted as hangs, and a human is told once.
fn discount_unreachable(live: &[ReplicaState], probes: &mut [Option<ProbeOutcome>]) {
    let probed: Vec<usize> = (0..live.len())
        .filter(|&i| live[i].is_serving() && probes[i].is_some())
        .collect();
    let all_hung = probed.len() >= 2
        && probed
            .iter()
            .all(|&i| probes[i].as_ref().is_some_and(ProbeOutcome::unanswered));
    if !all_hung {
        return;
    }
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(replicas = probed.len(), "no replica answers the agent's own probe while Docker calls them healthy: check that the agent shares their network and REPLICA_PROBE_PORT/REPLICA_PROBE_PATH; not treating them as hung");
    }
    for i in probed {
        if let Some(p) = probes[i].as_mut() {
            p.last.timed_out = false;
            p.last.error = Some(format!(
                "{} (every replica fails this probe: not counted as a hang)",
                p.last.error.as_deref().unwrap_or("no answer")
            ));
        }
    }
}

async fn observe_one(
    ctx: &Context,
    state: ReplicaState,
    probe: Option<ProbeOutcome>,
    stop_asked_at: Option<DateTime<Utc>>,
    depth: Depth,
) -> Observed {
    let logs_tail = if depth.logs && state.is_exited() && stop_asked_at.is_none() {
        logs_tail(ctx, &state.container.name).await
    } else {
        Vec::new()
    };
    let diagnosis = diagnose(Evidence {
        state: &state,
        probe: probe.as_ref(),
        stop_asked_at,
        logs_tail,
        now: ctx.clock.now(),
        stable_after: ctx.stable_after,
    });
    Observed {
        state,
        diagnosis,
        probe,
    }
}

/// The diagnosis of one replica's live state (a tool about to act on it), with the same stop
/// attribution as a whole observation; `probe` is reused when the caller has one of this life.
pub async fn diagnose_state(
    ctx: &Context,
    project: &str,
    state: &ReplicaState,
    probe: Option<&ProbeOutcome>,
) -> ReplicaDiagnosis {
    let stop_asked_at = attribute_stops(ctx, project, std::slice::from_ref(state))
        .await
        .pop()
        .flatten();
    diagnose(Evidence {
        state,
        probe,
        stop_asked_at,
        logs_tail: Vec::new(),
        now: ctx.clock.now(),
        stable_after: ctx.stable_after,
    })
}

/// For each replica, when someone asked it to stop in its current life (see [`crate::stops`]
/// for the reasoning): a request the agent saw and still trusts, or one found in Docker's own
/// event history. A life that ended with nothing found is not attributable: it is restored, as
/// `unless-stopped` would. One history lookup covers every replica that needs one, once per life.
async fn attribute_stops(
    ctx: &Context,
    project: &str,
    live: &[ReplicaState],
) -> Vec<Option<DateTime<Utc>>> {
    let mut out = vec![None; live.len()];
    let mut lookup = Vec::new();
    for (i, s) in live.iter().enumerate() {
        let finished = if s.is_exited() { s.finished_at } else { None };
        match ctx
            .stops
            .attribution(&s.container.id, s.started_at, finished)
        {
            Attribution::Asked(at) => out[i] = Some(at),
            Attribution::Suspect(_) | Attribution::Unknown if s.is_exited() && !s.oom_killed => {
                lookup.push(i)
            }
            // A suspect request of a replica still running: it is being stopped.
            Attribution::Suspect(at) => out[i] = Some(at),
            Attribution::Unknown | Attribution::NotAsked => {}
        }
    }
    if lookup.is_empty() {
        return out;
    }
    let now = ctx.clock.now();
    let since = lookup
        .iter()
        .filter_map(|&i| live[i].started_at)
        .min()
        .unwrap_or(now - chrono::Duration::hours(1))
        - chrono::Duration::seconds(1);
    // Until now, not later: the daemon streams until `until` before it closes the answer.
    let history = match ctx.runtime.history(project, since, now).await {
        Ok(h) => h,
        Err(e) => {
            // Not knowable now: trust what was seen, restore what was not.
            tracing::warn!(error = %e, "cannot read Docker's event history to attribute a stop");
            for &i in &lookup {
                let s = &live[i];
                if let Attribution::Suspect(at) =
                    ctx.stops
                        .attribution(&s.container.id, s.started_at, s.finished_at)
                {
                    out[i] = Some(at);
                }
            }
            return out;
        }
    };
    for &i in &lookup {
        let s = &live[i];
        let id = &s.container.id;
        let found = history
            .iter()
            .filter(|e| &e.container.id == id && e.is_stop_request())
            .filter(|e| s.started_at.is_none_or(|st| e.time >= st))
            .filter(|e| {
                s.finished_at
                    .is_none_or(|f| e.time <= f + chrono::Duration::seconds(2))
            })
            .filter(|e| !ctx.stops.covers_own(id, e.time))
            .map(|e| e.time)
            .min();
        match found {
            Some(at) => {
                tracing::info!(container = %s.container.name, "a stop request for it is in Docker's event history: stopped on purpose");
                ctx.stops.found(id, at);
                out[i] = Some(at);
            }
            None => {
                if matches!(
                    ctx.stops.attribution(id, s.started_at, s.finished_at),
                    Attribution::Suspect(_)
                ) {
                    tracing::info!(container = %s.container.name, "a stop seen just before Docker went away is not in its history: the daemon's own shutdown");
                    ctx.stops.forget(id);
                }
                if let Some(f) = s.finished_at {
                    ctx.stops.not_found(id, f);
                }
            }
        }
    }
    out
}

/// The last lines of a container's output, bounded; empty when they cannot be read.
pub async fn logs_tail(ctx: &Context, name: &str) -> Vec<String> {
    match ctx.runtime.logs_tail(name, LOG_LINES).await {
        Ok(text) => text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .map(|l| crate::text::bounded(l, LOG_LINE_BYTES))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .take(LOG_LINES)
            .rev()
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "could not read logs for the diagnosis");
            Vec::new()
        }
    }
}
