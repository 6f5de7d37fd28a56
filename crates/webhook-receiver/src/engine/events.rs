//! The Docker events fast path: `die`, `oom` and `health_status: unhealthy` of the allowed services
//! trigger a run at once, without waiting for Prometheus and Alertmanager.

use std::time::Duration;

use futures_util::StreamExt;

use super::Engine;
use crate::incidents::{TriggerKind, TriggerRecord};
use crate::runtime::{is_requested_stop, ContainerRuntime, EventKind};
use crate::tools::ToolContext;

/// Follows the event stream for ever, reconnecting with backoff when the daemon goes away.
pub async fn watch_events(engine: Engine, ctx: std::sync::Arc<ToolContext>) {
    let runtime: &dyn ContainerRuntime = ctx.runtime.as_ref();
    let project = engine.scope().project().to_string();
    let mut backoff = Duration::from_millis(500);
    loop {
        match runtime.events(&project).await {
            Ok(mut stream) => {
                tracing::info!(project = %project, "following docker events");
                backoff = Duration::from_millis(500);
                while let Some(ev) = stream.next().await {
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(e) => {
                            tracing::warn!(error = %e, "docker event stream failed");
                            break;
                        }
                    };
                    if ev.kind == EventKind::Die
                        && ctx
                            .own_restarts
                            .lock()
                            .expect("lock")
                            .contains(&ev.container.id)
                    {
                        continue; // the agent's own restart of an unhealthy replica
                    }
                    if !engine
                        .scope()
                        .allows(&ev.container.project, &ev.container.service)
                    {
                        continue;
                    }
                    if ev.kind == EventKind::Die && is_requested_stop(ev.exit_code) {
                        // Asked to stop (`docker compose stop`/`down`, an operator): not for the
                        // fast path to undo. A replica that stays missing is healed by an alert.
                        tracing::info!(container = %ev.container.name, exit_code = ?ev.exit_code, "stopped on purpose; no fast-path healing");
                        continue;
                    }
                    let name = match ev.kind {
                        EventKind::Die => "die",
                        EventKind::Oom => "oom",
                        EventKind::Unhealthy => "unhealthy",
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
            }
            Err(e) => tracing::debug!(error = %e, "cannot follow docker events yet"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
