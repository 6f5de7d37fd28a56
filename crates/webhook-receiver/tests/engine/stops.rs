//! Stopped on purpose means someone asked. A stop the agent saw, or one Docker's event history
//! still holds, is respected by every path; an exit nobody the agent can name asked for (a daemon
//! shutdown) is restored, as `unless-stopped` would, within seconds of Docker answering again.

use std::time::Duration;

use webhook_receiver::incidents::{FailureClass, Outcome, TriggerKind};

use super::*;

#[tokio::test(start_paused = true)]
async fn a_replica_stopped_on_purpose_is_left_alone_by_every_path_and_recorded_once() {
    let h = harness(Opts::default()).await;
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rt.stop(&h.names[1]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..3 {
        h.trigger_alert();
        h.settle().await;
        h.resync();
        h.settle().await;
    }
    events.abort();
    assert_eq!(h.rt.actions_on(&h.names[1]), 0);
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1, "{:?}", h.outcomes());
    assert_eq!(
        (incidents[0].outcome, incidents[0].class),
        (Outcome::NoAction, FailureClass::StoppedOnPurpose)
    );
    assert_eq!(
        h.engine.health()["webapp"].status,
        "ok",
        "a stop on purpose is not degraded"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_the_agent_did_not_see_is_found_in_dockers_history() {
    // No event stream: the agent hears of the stop from an alert only.
    let h = harness(Opts::default()).await;
    h.rt.stop(&h.names[0]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.rt.actions_on(&h.names[0]), 0);
    assert_eq!(h.incidents()[0].class, FailureClass::StoppedOnPurpose);
    // The same exit with nothing in the history (the daemon was restarted since) is restored.
    let h = harness(Opts::default()).await;
    h.rt.stop(&h.names[0]);
    h.rt.daemon_down();
    h.rt.daemon_back();
    h.trigger_alert();
    h.settle().await;
    for n in &h.names {
        assert!(h.rt.serving(n), "{n}");
    }
}

/// A daemon restart with the agent watching: every replica it stopped serves again within 30 s of
/// Docker answering, without an alert; the one an operator stopped before stays stopped.
#[tokio::test(start_paused = true)]
async fn after_a_daemon_restart_replicas_are_restored_but_an_operators_stop_stands() {
    let h = harness(Opts::default()).await;
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = h.names[2].clone();
    h.rt.stop(&stopped);
    tokio::time::sleep(Duration::from_secs(30)).await;
    h.settle().await;
    h.rt.daemon_down();
    tokio::time::sleep(Duration::from_secs(8)).await;
    h.rt.daemon_back();
    let back = h
        .until(Duration::from_secs(30), || {
            h.names[..2].iter().all(|n| h.rt.serving(n))
        })
        .await;
    assert!(back.is_some(), "{:?}", h.outcomes());
    eprintln!(
        "virtual: replicas serve {:?} after Docker answers",
        back.unwrap()
    );
    h.settle().await;
    events.abort();
    assert_eq!(h.rt.actions_on(&stopped), 0, "the operator's stop stands");
    let healed = h.incidents().pop().unwrap();
    assert_eq!(healed.outcome, Outcome::Healed);
    assert_eq!(healed.class, FailureClass::Killed);
    assert!(
        healed.triggers.iter().all(|t| t.kind != TriggerKind::Alert),
        "no alert needed"
    );
    let restored = healed
        .diagnosis
        .iter()
        .find(|d| d.name == h.names[0])
        .unwrap();
    assert!(
        restored.reason.contains("no stop request"),
        "{}",
        restored.reason
    );
}

/// The agent runs in the stack, so the daemon's shutdown stops it too: what it saw is on disk,
/// and its next start tells the operator's stop apart from the daemon's.
#[tokio::test(start_paused = true)]
async fn across_an_agent_restart_the_stops_it_saw_are_still_known() {
    let dir = std::env::temp_dir().join(format!(
        "engine-stops-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stops.json");
    let first = harness(Opts {
        stops: Some(path.clone()),
        ..Opts::default()
    })
    .await;
    let events = first.follow_events();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = first.names[1].clone();
    first.rt.stop(&stopped);
    tokio::time::sleep(Duration::from_secs(30)).await;
    events.abort();
    let now = first.engine.context().clock.now();
    first.engine.context().stops.close(now).await;
    let rt = first.rt.clone();
    drop(first);
    // The daemon goes down (taking the agent with it) and comes back.
    rt.daemon_down();
    tokio::time::sleep(Duration::from_secs(20)).await;
    rt.daemon_back();
    let second = harness(Opts {
        stops: Some(path.clone()),
        rt: Some(rt.clone()),
        ..Opts::default()
    })
    .await;
    second
        .engine
        .reconcile_all(TriggerKind::Startup, "agent started");
    second.settle().await;
    for n in [&second.names[0], &second.names[2]] {
        assert!(second.rt.serving(n), "{n} restored");
    }
    assert_eq!(rt.actions_on(&stopped), 0, "the stop seen before stands");
    std::fs::remove_dir_all(dir).ok();
}

/// A stop seen moments before contact with Docker was lost may have been the daemon's own
/// shutdown: Docker's history decides once it answers again.
#[tokio::test(start_paused = true)]
async fn a_stop_seen_just_before_docker_went_away_is_checked_against_its_history() {
    // The stream drops (a proxy restart), the daemon stays up: the history still holds the stop.
    let h = harness(Opts::default()).await;
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rt.stop(&h.names[0]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rt.end_event_streams();
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.resync();
    h.settle().await;
    assert_eq!(h.rt.actions_on(&h.names[0]), 0, "still an operator's stop");
    // The daemon itself goes: the same stop is no longer in any history, and is restored.
    h.rt.stop(&h.names[1]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rt.daemon_down();
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.rt.daemon_back();
    assert!(h
        .until(Duration::from_secs(30), || h.rt.serving(&h.names[1]))
        .await
        .is_some());
    events.abort();
    assert_eq!(h.rt.actions_on(&h.names[0]), 0);
}
