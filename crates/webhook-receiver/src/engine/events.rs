//! The Docker events fast path: `die`, `oom`, `health_status: unhealthy` and `pause` of the
//! healable services start a look at once, without waiting for Prometheus and Alertmanager.
//! Stop requests (`kill` with SIGTERM, `stop`) are written down ([`crate::stops`]): the replica is
//! on its way down on purpose. Every (re)connection of the stream is followed by a reconcile of
//! every service, so deaths during a gap are never lost; the end of the stream is a loss of
//! contact with Docker, which makes the stops seen just before it suspects (a daemon shutdown).

use std::time::Duration;

use futures_util::StreamExt;

use super::Engine;
use crate::incidents::{TriggerKind, TriggerRecord};
use crate::runtime::EventKind;

/// Follows the event stream for ever, reconnecting with backoff when the daemon goes away.
pub async fn watch_events(engine: Engine) {
    let ctx = engine.context().clone();
    let project = engine.scope().project().to_string();
    let mut backoff = Duration::from_millis(500);
    loop {
        match ctx.runtime.events(&project).await {
            Ok(mut stream) => {
                tracing::info!(project = %project, "following docker events");
                backoff = Duration::from_millis(500);
                ctx.stops.contact(ctx.clock.now());
                // Whatever died while the stream was down is found by looking again.
                engine.reconcile_all(TriggerKind::Reconcile, "docker events (re)connected");
                while let Some(ev) = stream.next().await {
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(e) => {
                            tracing::warn!(error = %e, "docker event stream failed");
                            break;
                        }
                    };
                    if !engine
                        .scope()
                        .allows(&ev.container.project, &ev.container.service)
                    {
                        continue;
                    }
                    if ctx.stops.covers_own(&ev.container.id, ev.time) {
                        tracing::debug!(container = %ev.container.name, event = ?ev.kind, "event of the agent's own action");
                        continue;
                    }
                    if ev.is_stop_request() {
                        // `docker stop` begins with SIGTERM: from now on the replica is on its
                        // way down on purpose, and a slow shutdown is not a hang.
                        if ev.kind == EventKind::Stop {
                            tracing::info!(container = %ev.container.name, "stop requested (docker stop / compose stop): the replica is left stopped");
                        }
                        ctx.stops.seen(&ev.container.id, ev.time);
                        continue;
                    }
                    let name = match ev.kind {
                        EventKind::Kill { .. } | EventKind::Stop => continue,
                        EventKind::Die => "die",
                        EventKind::Oom => "oom",
                        EventKind::Unhealthy => "unhealthy",
                        EventKind::Pause => "pause",
                    };
                    tracing::info!(event = name, container = %ev.container.name, exit_code = ?ev.exit_code, "container event");
                    engine.trigger(
                        &ev.container.service,
                        TriggerRecord {
                            kind: TriggerKind::Event,
                            name: name.to_string(),
                            at: ev.time,
                            container: Some(ev.container.name.clone()),
                            summary: ev.exit_code.map(|c| format!("exit code {c}")),
                        },
                    );
                }
                tracing::warn!("docker event stream ended; reconnecting");
                ctx.stops.lost(ctx.clock.now());
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot follow docker events yet");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
