//! Every background loop is supervised: a panic in the starter, the events watcher, the resync,
//! the Docker supervisor or the notifier is logged, counted, and the loop goes on. Each panic is
//! injected through a seam the loop really uses (the runtime double, the clock, the notification
//! receiver), never a hook in the shipped code.

use std::time::Duration;

use test_support::Op;
use webhook_receiver::background;
use webhook_receiver::incidents::Outcome;
use webhook_receiver::intake::DockerAccess;
use webhook_receiver::supervise;

use super::*;

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_starter_is_counted_and_the_service_looked_at_again() {
    let h = harness(Opts::default()).await;
    h.rt.kill(&h.names[0]);
    h.rt.panic_next(Op::List);
    h.trigger_alert();
    h.settle().await;
    assert!(h.metric(r#"healing_task_panics_total{task="starter"} 1"#));
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.settle().await;
    assert!(h.rt.serving(&h.names[0]));
    assert_eq!(h.outcomes(), [Outcome::Healed]);
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_events_watcher_is_counted_and_it_follows_events_again() {
    let h = harness(Opts::default()).await;
    h.rt.panic_next(Op::Events);
    let engine = h.engine.clone();
    let watcher = supervise::spawn("events", &h.metrics, move || {
        webhook_receiver::engine::watch_events(engine.clone())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.metric(r#"healing_task_panics_total{task="events"} 1"#));
    h.settle().await;
    h.rt.kill(&h.names[1]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.settle().await;
    watcher.abort();
    assert!(h.rt.serving(&h.names[1]), "healed from its die event");
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_resync_is_counted_and_it_resyncs_again() {
    let h = harness(Opts::default()).await;
    let engine = h.engine.clone();
    let resync = supervise::spawn("resync", &h.metrics, move || {
        background::resync(engine.clone(), Duration::from_secs(10))
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The next reading of the clock is the resync's, at its tick.
    h.clock_panics.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(h.metric(r#"healing_task_panics_total{task="resync"} 1"#));
    h.rt.kill(&h.names[2]);
    tokio::time::sleep(Duration::from_secs(12)).await;
    h.settle().await;
    resync.abort();
    assert!(h.rt.serving(&h.names[2]), "healed by a later resync alone");
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_docker_supervisor_is_counted_and_it_watches_again() {
    let h = harness(Opts::default()).await;
    h.rt.panic_next(Op::Ping);
    let access = Arc::new(Mutex::new(DockerAccess::Unknown));
    let (engine, a) = (h.engine.clone(), access.clone());
    let docker = supervise::spawn("docker", &h.metrics, move || {
        background::supervise_docker(engine.clone(), a.clone())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    docker.abort();
    assert!(h.metric(r#"healing_task_panics_total{task="docker"} 1"#));
    assert_eq!(*access.lock().unwrap(), DockerAccess::Ok);
    assert!(h.metric("healing_docker_up 1"));
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_notifier_loses_one_notification_not_the_rest() {
    let h = harness(Opts::default()).await;
    h.sink.panic_next.store(1, Ordering::SeqCst);
    h.rt.kill(&h.names[0]);
    h.trigger_alert();
    h.settle().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.metric(r#"healing_task_panics_total{task="notifier"} 1"#));
    assert!(h.metric(r#"healing_notifications_total{event="healed",result="failed"} 1"#));
    h.rt.kill(&h.names[1]);
    h.trigger_alert();
    h.settle().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.sink.events(), ["healed"], "the next one is delivered");
}

#[tokio::test(start_paused = true)]
async fn the_agents_loops_are_started_supervised() {
    // Through the function the agent starts its loops with: the events watcher and the Docker
    // supervisor each panic once, and each goes on.
    let h = harness(Opts::default()).await;
    h.rt.panic_next(Op::Events);
    h.rt.panic_next(Op::Ping);
    let access = Arc::new(Mutex::new(DockerAccess::Unknown));
    let loops = background::spawn_all(&h.engine, access.clone(), true, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.metric(r#"healing_task_panics_total{task="events"} 1"#));
    assert!(h.metric(r#"healing_task_panics_total{task="docker"} 1"#));
    assert_eq!(*access.lock().unwrap(), DockerAccess::Ok);
    h.settle().await;
    h.rt.kill(&h.names[0]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.settle().await;
    for l in loops {
        l.abort();
    }
    assert!(h.rt.serving(&h.names[0]), "healed from its die event");
}
