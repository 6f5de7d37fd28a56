//! The basics: one run per burst, a failure requeued, a panic in a run caught, shutdown, MTTR,
//! hangs, gaps in the event stream, action levels, a failure in front of the replicas.

use std::time::Duration;

use test_support::Op;
use webhook_receiver::incidents::{ActionLevel, FailureClass, Outcome, TriggerKind};
use webhook_receiver::runtime::RuntimeError;

use super::*;

#[tokio::test(start_paused = true)]
async fn a_burst_of_triggers_is_one_run_and_one_start_per_dead_replica() {
    let h = harness(Opts::default()).await;
    for n in &h.names {
        h.rt.kill(n);
    }
    for _ in 0..200 {
        h.trigger_alert();
    }
    h.settle().await;
    for n in &h.names {
        assert_eq!(h.rt.actions_on(n), 1, "{n}");
        assert!(h.rt.serving(n), "{n}");
    }
    let incidents = h.incidents();
    assert_eq!(h.outcomes(), [Outcome::Healed]);
    assert_eq!(incidents[0].class, FailureClass::Killed);
    assert_eq!(incidents[0].triggers.len(), 1, "identical triggers merge");
    // The alert repeats on the now healthy service: recorded once, then de-duplicated.
    h.trigger_alert();
    h.settle().await;
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.outcomes(), [Outcome::Healed, Outcome::NoAction]);
    assert!(
        h.metric(r#"healing_deduplicated_total{service="webapp"} 1"#),
        "{}",
        h.metrics.render()
    );
}

#[tokio::test(start_paused = true)]
async fn docker_unreachable_during_a_start_fails_the_run_and_the_retry_heals() {
    let h = harness(Opts::default()).await;
    let r = &h.names[1];
    h.rt.kill(r);
    h.rt.fail_next(
        Op::Start,
        r,
        RuntimeError::Unreachable("docker call timed out".into()),
    );
    h.trigger_alert();
    // The retry comes from the requeue alone: no other trigger.
    h.settle().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.settle().await;
    assert_eq!(h.outcomes(), [Outcome::Failed, Outcome::Healed]);
    assert_eq!(h.rt.actions_on(r), 1, "the failed start is not an action");
    assert!(h.rt.serving(r));
    let first = &h.incidents()[0];
    assert!(first.summary.contains("requeued"), "{}", first.summary);
    assert_eq!(h.incidents()[1].trigger, TriggerKind::Requeue);
    assert!(h.metric(r#"healing_requeues_total{service="webapp"} 1"#));
}

#[tokio::test(start_paused = true)]
async fn a_start_docker_refuses_once_is_tried_again_within_the_run() {
    let h = harness(Opts::default()).await;
    let r = &h.names[1];
    h.rt.kill(r);
    h.rt.fail_next(
        Op::Start,
        r,
        RuntimeError::Api("HTTP 500: driver failed".into()),
    );
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.outcomes(), [Outcome::Healed]);
    assert_eq!(h.rt.actions_on(r), 1);
    assert!(h.rt.serving(r));
    let incident = h.incidents().remove(0);
    let acts: Vec<&str> = incident
        .timeline
        .iter()
        .filter(|a| a.action == "restart_container")
        .map(|a| a.result.as_str())
        .collect();
    assert_eq!(acts, ["ok"], "one call, the refusal retried inside it");
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_run_is_caught_recorded_and_the_service_healed_later() {
    let h = harness(Opts::default()).await;
    let r = &h.names[0];
    h.rt.kill(r);
    h.rt.panic_next(Op::Start);
    h.trigger_alert();
    h.settle().await;
    assert!(!h.engine.busy(), "the slot is freed");
    assert!(h.metric(r#"healing_run_panics_total{service="webapp"} 1"#));
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.settle().await;
    let incidents = h.incidents();
    assert_eq!(h.outcomes(), [Outcome::Failed, Outcome::Healed]);
    assert!(
        incidents[0].summary.contains("internal error"),
        "{}",
        incidents[0].summary
    );
    assert!(h.rt.serving(r));
}

// ---- lifecycle ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn shutdown_during_a_run_leaves_an_interrupted_incident() {
    let h = harness(Opts::default()).await;
    h.rt.set_action_delay(Duration::from_secs(60));
    h.rt.kill(&h.names[0]);
    h.trigger_alert();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(h.engine.busy());
    assert!(
        !h.engine.shutdown(Duration::from_secs(5)).await,
        "the run was cut short"
    );
    let i = &h.incidents()[0];
    assert_eq!(i.outcome, Outcome::Interrupted);
    assert!(i.summary.contains("shut down"), "{}", i.summary);
    assert!(
        !h.engine.trigger("webapp", h.alert()) || !h.engine.busy(),
        "no new work after shutdown"
    );
}

#[tokio::test(start_paused = true)]
async fn mttr_counts_from_the_death_not_from_an_older_still_firing_alert() {
    let h = harness(Opts::default()).await;
    // The alert has been firing for ten minutes (another replica, long healed).
    let mut stale = h.alert();
    stale.at = h.engine.context().clock.now() - chrono::Duration::minutes(10);
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.rt.kill(&h.names[0]);
    assert!(h.engine.trigger("webapp", stale));
    h.settle().await;
    let i = &h.incidents()[0];
    assert_eq!(i.outcome, Outcome::Healed);
    let mttr = i.mttr_seconds.unwrap();
    assert!(
        mttr < 5.0,
        "MTTR {mttr}s: measured from the alert, not the death"
    );
}

#[tokio::test(start_paused = true)]
async fn hung_replicas_are_unpaused_or_restarted_and_the_restart_die_is_not_a_new_failure() {
    let h = harness(Opts::default()).await;
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rt.pause(&h.names[0]);
    h.settle().await;
    assert!(h.rt.serving(&h.names[0]));
    assert_eq!(
        h.rt.actions(),
        vec![(Op::Unpause, h.names[0].clone(), h.rt.actions()[0].2)]
    );
    // Frozen: Docker still says healthy, only the agent's probe (and the resync) tells.
    h.rt.freeze(&h.names[1]);
    h.engine.reconcile_all(TriggerKind::Reconcile, "test");
    h.settle().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.settle().await;
    events.abort();
    assert!(h.rt.serving(&h.names[1]));
    assert_eq!(h.rt.actions_on(&h.names[1]), 1);
    let hung: Vec<_> = h
        .incidents()
        .into_iter()
        .map(|i| (i.outcome, i.class))
        .collect();
    assert_eq!(
        hung,
        [
            (Outcome::Healed, FailureClass::Hung),
            (Outcome::Healed, FailureClass::Hung)
        ],
        "the die event of the agent's own restart starts nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replica_killed_while_it_is_probed_is_diagnosed_killed_not_hung() {
    let h = harness(Opts::default()).await;
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The periodic resync inspects a running replica; `docker kill` lands before its probe.
    let r = &h.names[1];
    h.rt.kill_when_probed(r);
    h.engine.reconcile_all(TriggerKind::Reconcile, "test");
    h.settle().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.settle().await;
    events.abort();
    assert!(h.rt.serving(r));
    assert_eq!(h.rt.actions_on(r), 1);
    let incidents = h.incidents();
    let diagnosed: Vec<FailureClass> = incidents
        .iter()
        .flat_map(|i| i.diagnosis.iter().filter(|d| d.name == *r).map(|d| d.class))
        .collect();
    assert!(
        diagnosed.contains(&FailureClass::Killed) && !diagnosed.contains(&FailureClass::Hung),
        "a probe unanswered because the replica died meanwhile is not a hang: {diagnosed:?}"
    );
    let healed: Vec<FailureClass> = incidents
        .iter()
        .filter(|i| i.outcome == Outcome::Healed)
        .map(|i| i.class)
        .collect();
    assert_eq!(healed, [FailureClass::Killed], "{incidents:#?}");
}

#[tokio::test(start_paused = true)]
async fn deaths_while_the_event_stream_was_down_are_found_on_reconnect() {
    let h = harness(Opts::default()).await;
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.settle().await;
    h.rt.end_event_streams();
    h.rt.kill(&h.names[2]); // nobody is listening
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.settle().await;
    events.abort();
    assert!(h.rt.serving(&h.names[2]));
    let i = h.incidents().pop().unwrap();
    assert_eq!(
        (i.outcome, i.trigger),
        (Outcome::Healed, TriggerKind::Reconcile)
    );
}

#[tokio::test(start_paused = true)]
async fn notify_level_diagnoses_and_never_acts() {
    let h = harness(Opts::default()).await;
    h.set_action_level("notify");
    h.rt.kill(&h.names[0]);
    h.trigger_alert();
    h.settle().await;
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.rt.actions_on(&h.names[0]), 0);
    assert_eq!(h.outcomes(), [Outcome::Notified]);
    assert_eq!(h.incidents()[0].action_level, ActionLevel::Notify);
}

#[tokio::test(start_paused = true)]
async fn off_level_leaves_the_service_alone_and_records_nothing() {
    let h = harness(Opts::default()).await;
    h.set_action_level("off");
    h.rt.kill(&h.names[0]);
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.rt.actions_on(&h.names[0]), 0);
    assert!(h.incidents().is_empty(), "{:?}", h.outcomes());
    // Turned back to auto, the next trigger heals it: `off` was the label, not a lost replica.
    h.set_action_level("auto");
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.rt.actions_on(&h.names[0]), 1);
    assert_eq!(h.outcomes(), [Outcome::Healed]);
}

#[tokio::test(start_paused = true)]
async fn the_service_url_failing_in_front_of_healthy_replicas_is_out_of_scope() {
    let h = harness(Opts::default()).await;
    h.rt.set_service_url(false);
    h.engine.reconcile_all(TriggerKind::Reconcile, "test");
    h.settle().await;
    h.engine.reconcile_all(TriggerKind::Reconcile, "test");
    h.settle().await;
    assert!(h.rt.actions().is_empty());
    let i = h.incidents();
    assert_eq!(i.len(), 1);
    assert_eq!(i[0].class, FailureClass::OutOfScope);
    assert!(i[0]
        .scope_note
        .as_deref()
        .unwrap()
        .contains("in front of the replicas"));
}
