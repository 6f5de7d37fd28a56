//! The Docker events fast path: `die`, `oom`, `health_status: unhealthy` and `pause` of the
//! healable services start a look at once, without waiting for Prometheus and Alertmanager.
//! `stop` events mark a replica as stopped on purpose. Every (re)connection of the stream is
//! followed by a reconcile of every service, so deaths during a gap are never lost.

use std::time::Duration;

use futures_util::StreamExt;

use super::Engine;
use crate::incidents::{TriggerKind, TriggerRecord};
use crate::runtime::EventKind;

/// How long before its API goes away a stopping daemon may stop its containers (its default
/// stop timeout is 10 s).
const DAEMON_STOP_GRACE: Duration = Duration::from_secs(15);

/// Follows the event stream for ever, reconnecting with backoff when the daemon goes away.
pub async fn watch_events(engine: Engine) {
    let ctx = engine.context().clone();
    let project = engine.scope().project().to_string();
    let mut backoff = Duration::from_millis(500);
    // When the stream last ended, and whether the daemon refused us since.
    let mut gap: Option<(chrono::DateTime<chrono::Utc>, bool)> = None;
    loop {
        match ctx.runtime.events(&project).await {
            Ok(mut stream) => {
                tracing::info!(project = %project, "following docker events");
                backoff = Duration::from_millis(500);
                if let Some((from, true)) = gap.take() {
                    // The daemon stops its containers before its API goes away.
                    let grace = chrono::Duration::from_std(DAEMON_STOP_GRACE).unwrap_or_default();
                    ctx.outages.record(from - grace, ctx.clock.now());
                }
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
                    if ctx.own.covers(&ev.container.id, ev.time) {
                        tracing::debug!(container = %ev.container.name, event = ?ev.kind, "event of the agent's own restart");
                        continue;
                    }
                    let name = match ev.kind {
                        // `docker stop` begins with SIGTERM: from now on the replica is on its
                        // way down on purpose, and a slow shutdown is not a hang.
                        EventKind::Kill { signal: Some(15) } => {
                            ctx.stops.mark(&ev.container.id, ev.time);
                            continue;
                        }
                        EventKind::Kill { .. } => continue,
                        EventKind::Stop => {
                            tracing::info!(container = %ev.container.name, "stop requested (docker stop / compose stop): the replica is left stopped");
                            ctx.stops.mark(&ev.container.id, ev.time);
                            continue;
                        }
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
                gap = Some((ctx.clock.now(), false));
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot follow docker events yet");
                if let Some((_, down)) = gap.as_mut() {
                    *down = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
