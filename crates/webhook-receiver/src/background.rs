//! The agent's background loops, each under a supervisor ([`crate::supervise`]): the Docker
//! events watcher, the periodic resync, the replica names for dashboards, and the Docker supervisor (reachability and access,
//! contact for the stop ledger's heartbeat). The notifier's worker is supervised where it is
//! made ([`crate::notify`]), the engine's starters inside the engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::context::Context;
use crate::engine::{watch_events, Engine};
use crate::incidents::TriggerKind;
use crate::intake::DockerAccess;

/// Starts the loops; abort the handles to stop them.
pub fn spawn_all(
    engine: &Engine,
    access: Arc<Mutex<DockerAccess>>,
    events: bool,
    reconcile_every: Duration,
) -> Vec<JoinHandle<()>> {
    let metrics = engine.context().metrics.clone();
    let mut handles = Vec::new();
    {
        let engine = engine.clone();
        handles.push(crate::supervise::spawn("docker", &metrics, move || {
            supervise_docker(engine.clone(), access.clone())
        }));
    }
    if events {
        let engine = engine.clone();
        handles.push(crate::supervise::spawn("events", &metrics, move || {
            watch_events(engine.clone())
        }));
    }
    if !reconcile_every.is_zero() {
        let engine = engine.clone();
        handles.push(crate::supervise::spawn("resync", &metrics, move || {
            resync(engine.clone(), reconcile_every)
        }));
    }
    {
        let engine = engine.clone();
        handles.push(crate::supervise::spawn("memory", &metrics, move || {
            crate::engine::watch_memory(engine.clone())
        }));
    }
    {
        let engine = engine.clone();
        handles.push(crate::supervise::spawn(
            "replica-info",
            &metrics,
            move || publish_replica_info(engine.clone()),
        ));
    }
    handles
}

/// The periodic resync: a look at every service, whatever the triggers say, and the engine's
/// upkeep.
pub async fn resync(engine: Engine, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        engine.reconcile_all(TriggerKind::Reconcile, "periodic resync");
        engine.tick();
    }
}

/// Keeps the Docker access state current (reachable? may it list, inspect and act?), logs every
/// change, and tells the stop ledger when Docker answered (its heartbeat) or stopped answering.
/// The runtime reconnects by itself on the next call.
pub async fn supervise_docker(engine: Engine, access: Arc<Mutex<DockerAccess>>) {
    let ctx = engine.context().clone();
    let project = engine.scope().project().to_string();
    let services: Vec<String> = engine.scope().services().map(str::to_string).collect();
    let mut was_ok = false;
    loop {
        let now = match ctx.runtime.ping().await {
            Err(e) => DockerAccess::Missing(e.to_string()),
            // The write check costs the daemon a (harmless) 404 each time: only after a change.
            Ok(()) => self_test(&ctx, &project, &services, !was_ok).await,
        };
        let reachable = !matches!(now, DockerAccess::Missing(_));
        ctx.metrics.docker_up.set(i64::from(reachable));
        if reachable {
            ctx.stops.contact(ctx.clock.now());
        } else {
            ctx.stops.lost(ctx.clock.now());
        }
        let changed = {
            let mut a = access.lock().unwrap_or_else(|p| p.into_inner());
            let changed = std::mem::discriminant(&*a) != std::mem::discriminant(&now);
            *a = now.clone();
            changed
        };
        if changed {
            match &now {
                DockerAccess::Ok => {
                    tracing::info!("docker is reachable: the agent can list, inspect and act")
                }
                DockerAccess::ReadOnly(why) => {
                    tracing::error!(%why, "docker access is read-only: the agent can diagnose but not heal")
                }
                DockerAccess::Missing(why) => {
                    tracing::warn!(%why, "docker is unreachable; the agent keeps serving and retries")
                }
                DockerAccess::Unknown => {}
            }
        }
        let ok = matches!(now, DockerAccess::Ok);
        was_ok = ok;
        tokio::time::sleep(Duration::from_secs(if ok { 10 } else { 2 })).await;
    }
}

/// Lists and inspects what the agent heals and checks it may act, changing nothing.
async fn self_test(
    ctx: &Context,
    project: &str,
    services: &[String],
    check_write: bool,
) -> DockerAccess {
    for s in services {
        match ctx.runtime.list(project, s).await {
            Ok(list) => {
                if let Some(first) = list.first() {
                    if let Err(e) = ctx.runtime.inspect(first, false).await {
                        return DockerAccess::Missing(format!(
                            "cannot inspect {}: {e}",
                            first.name
                        ));
                    }
                }
            }
            Err(e) => {
                return DockerAccess::Missing(format!("cannot list the containers of {s}: {e}"))
            }
        }
    }
    if !check_write {
        return DockerAccess::Ok;
    }
    let Some(service) = services.first() else {
        return DockerAccess::Ok;
    };
    match ctx.runtime.can_act(project, service).await {
        Ok(true) => DockerAccess::Ok,
        Ok(false) => DockerAccess::ReadOnly(
            "starting a container is refused (403): check the Docker socket proxy's rules".into(),
        ),
        Err(e) => DockerAccess::Missing(format!("cannot check write access: {e}")),
    }
}

/// Keeps `healing_replica_info` current: every running replica's name and address, looked at
/// every 2 s (one list and an inspect per replica); a restarted replica has a new address, and a
/// dashboard that names replicas by joining on it should not show the old one for long.
pub async fn publish_replica_info(engine: Engine) {
    let metrics = engine.context().metrics.clone();
    use std::collections::HashSet;
    let ctx = engine.context().clone();
    let services: Vec<String> = engine.scope().services().map(str::to_string).collect();
    let project = engine.scope().project().to_string();
    let mut shown: HashSet<[String; 3]> = HashSet::new();
    loop {
        let mut now = HashSet::new();
        let mut complete = true;
        for service in &services {
            let Ok(list) = ctx.runtime.list(&project, service).await else {
                complete = false;
                continue;
            };
            for c in list {
                match ctx.runtime.inspect(&c, false).await {
                    Ok(state) if state.status == crate::runtime::Status::Running => {
                        if let Some(ip) = state.ip {
                            now.insert([service.clone(), c.name.clone(), ip.to_string()]);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => complete = false,
                }
            }
        }
        // While Docker does not answer, what was known stays: better a name than none.
        if complete {
            for gone in shown.difference(&now) {
                let labels: Vec<&str> = gone.iter().map(String::as_str).collect();
                let _ = metrics.replica_info.remove_label_values(&labels);
            }
            shown = now.clone();
        } else {
            shown.extend(now.iter().cloned());
        }
        for labels in &now {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            metrics.replica_info.with_label_values(&labels).set(1);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
