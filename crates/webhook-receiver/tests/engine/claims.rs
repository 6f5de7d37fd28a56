//! One claim per replica, by container id, before any await: every alias of a replica finds the
//! same claim; a parallel call in the same turn, or another run, gets "already being acted on";
//! after a backoff the replica is looked at again and acted on only if the action still fits.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use webhook_receiver::incidents::Outcome;

use super::model::{harness_with_model, restart_calls, says};
use super::*;

#[tokio::test(start_paused = true)]
async fn one_turn_naming_a_replica_four_ways_acts_on_it_once() {
    let aliases = Arc::new(Mutex::new(Vec::<String>::new()));
    let a = aliases.clone();
    let h = harness_with_model(Box::new(move |turn, _| match turn {
        0 => (
            Duration::from_millis(100),
            Ok(restart_calls(&a.lock().unwrap())),
        ),
        _ => (Duration::ZERO, Ok(says("done"))),
    }))
    .await;
    let r = h.names[0].clone();
    let id = h.rt.container(&r).id;
    // Two replicas in the run (so the model's cap of 3 requests per replica allows the five
    // calls); the first is named four ways.
    let other = h.names[1].clone();
    *aliases.lock().unwrap() = vec![
        r.clone(),
        format!("/{r}"),
        id.clone(),
        id[..12].to_string(),
        other.clone(),
    ];
    // The start takes a while, so the calls of the turn overlap.
    h.rt.set_action_delay(Duration::from_millis(500));
    h.rt.kill(&r);
    h.rt.kill(&other);
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.rt.actions_on(&r), 1, "one start, whatever the names");
    assert_eq!(h.rt.actions_on(&other), 1);
    let i = h.incidents().pop().unwrap();
    assert_eq!(
        (i.outcome, i.mode),
        (Outcome::Healed, webhook_receiver::incidents::Mode::Llm)
    );
    let results: Vec<(String, String)> = i
        .timeline
        .iter()
        .filter(|a| a.action == "restart_container")
        .filter(|a| a.target.as_deref() != Some(other.as_str()))
        .map(|a| (a.result.clone(), a.detail.to_string()))
        .collect();
    assert_eq!(results.len(), 4, "{results:?}");
    assert_eq!(results.iter().filter(|(r, _)| r == "ok").count(), 1);
    for (_, detail) in results.iter().filter(|(r, _)| r != "ok") {
        assert!(detail.contains("already being acted on"), "{detail}");
    }
}

#[tokio::test(start_paused = true)]
async fn another_run_cannot_act_on_a_claimed_replica() {
    let turns = Arc::new(AtomicUsize::new(0));
    let t = turns.clone();
    let names = Arc::new(Mutex::new(Vec::<String>::new()));
    let n = names.clone();
    let h = harness_with_model(Box::new(move |_, history| {
        t.fetch_add(1, Ordering::SeqCst);
        let heal = super::model::to_heal(history);
        let all = n.lock().unwrap().clone();
        // The first request of each run holds only the user's message.
        if history.len() > 1 {
            return (Duration::ZERO, Ok(says("done")));
        }
        if heal.contains(&all[0]) {
            // The first run talks slowly about replica 1.
            (Duration::from_secs(10), Ok(restart_calls(&heal)))
        } else {
            // The second run (replica 2 died meanwhile) also asks for replica 1.
            (Duration::ZERO, Ok(restart_calls(&all[..2])))
        }
    }))
    .await;
    *names.lock().unwrap() = h.names.clone();
    h.rt.kill(&h.names[0]);
    h.trigger_alert();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rt.kill(&h.names[1]);
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.rt.actions_on(&h.names[0]), 1);
    assert_eq!(h.rt.actions_on(&h.names[1]), 1);
    let second = h
        .incidents()
        .into_iter()
        .find(|i| {
            i.timeline
                .iter()
                .any(|a| a.target.as_deref() == Some(h.names[1].as_str()) && a.result == "ok")
        })
        .unwrap();
    let refused = second
        .timeline
        .iter()
        .find(|a| a.target.as_deref() == Some(h.names[0].as_str()))
        .unwrap();
    assert!(
        refused
            .detail
            .to_string()
            .contains("already being acted on by another run"),
        "{:?}",
        refused.detail
    );
}

/// Builds a backoff streak on `r`: three restarts, each failing again just after its run
/// verified it serving. The next restart then waits 2 s after the last one: some 0.5 s more.
async fn streak(h: &Harness, r: &str, fail: impl Fn()) {
    for k in 1..=3 {
        fail();
        h.resync();
        h.settle().await;
        assert_eq!(h.rt.actions_on(r), k);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_recovers_during_the_backoff_is_left_alone() {
    let h = harness(Opts::default()).await;
    let r = h.names[0].clone();
    streak(&h, &r, || h.rt.kill(&r)).await;
    h.rt.kill(&r);
    h.resync();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.engine.busy(), "the run waits out its backoff");
    assert_eq!(h.rt.actions_on(&r), 3);
    h.rt.start_outside(&r);
    h.settle().await;
    assert_eq!(h.rt.actions_on(&r), 3, "not restarted after it recovered");
    let last = h.incidents().pop().unwrap();
    assert_eq!(last.outcome, Outcome::NoAction, "{}", last.summary);
}

#[tokio::test(start_paused = true)]
async fn a_replica_an_operator_stops_during_the_backoff_stays_stopped() {
    let h = harness(Opts::default()).await;
    let r = h.names[1].clone();
    streak(&h, &r, || h.rt.make_unhealthy(&r)).await;
    h.rt.make_unhealthy(&r);
    h.resync();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.engine.busy(), "the run waits out its backoff");
    assert_eq!(h.rt.actions_on(&r), 3);
    // `docker stop`, which the agent learns from Docker's event history.
    h.rt.stop(&r);
    h.settle().await;
    assert_eq!(h.rt.actions_on(&r), 3, "not restarted against the operator");
    assert_eq!(format!("{:?}", h.rt.status(&r)), "Exited");
    let last = h.incidents().pop().unwrap();
    assert_eq!(last.outcome, Outcome::NoAction, "{}", last.summary);
    let refused = last
        .timeline
        .iter()
        .find(|a| a.action == "restart_container")
        .unwrap();
    assert!(
        refused.detail.to_string().contains("stopped on purpose"),
        "{:?}",
        refused.detail
    );
}
