//! The floor (docs/agent.md): never worse than Docker's own restart policy. A replica that served
//! before it died is never given up on: restarted every time with a capped backoff, the
//! recurrence escalated once with its numbers. Only what a restart cannot fix is given up on
//! (never healthy, Docker refuses), escalated once, then left alone quietly until it changes.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use test_support::Behaviour;
use webhook_receiver::incidents::{EscalationReason, FailureClass, Outcome};

use super::*;

#[tokio::test(start_paused = true)]
async fn twenty_deaths_of_a_served_replica_in_three_minutes_are_all_restarted_with_one_escalation()
{
    let h = harness(Opts::default()).await;
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let r = h.names[0].clone();
    // A fresh start (by compose, say): every life counted is one under the load.
    h.rt.start_outside(&r);
    let began = tokio::time::Instant::now();
    let mut downtimes = Vec::new();
    for death in 0..20 {
        // Under the walkthrough's load a replica fills its 256 MiB about 5 s after it serves.
        tokio::time::sleep(Duration::from_secs(5)).await;
        h.rt.exit(&r, 137, true);
        let down = h
            .until(Duration::from_secs(30), || h.rt.serving(&r))
            .await
            .unwrap_or_else(|| panic!("death {death}: not serving again: {:?}", h.outcomes()));
        downtimes.push(down);
    }
    let took = began.elapsed();
    assert!(took < Duration::from_secs(180), "20 lives took {took:?}");
    h.settle().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    events.abort();

    assert_eq!(h.rt.actions_on(&r), 20, "every death restarted");
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 20, "{:?}", h.outcomes());
    assert!(incidents.iter().all(|i| i.outcome == Outcome::Healed));
    // The backoff is capped low enough to serve: at most 2 s, then 1 s to become healthy.
    let worst = downtimes.iter().max().unwrap();
    assert!(
        *worst <= Duration::from_millis(3600),
        "downtimes {downtimes:?}"
    );

    let escalated: Vec<_> = incidents
        .iter()
        .filter(|i| i.escalation.is_some())
        .collect();
    assert_eq!(escalated.len(), 1, "escalated once");
    let e = escalated[0].escalation.as_ref().unwrap();
    assert_eq!(e.reason, EscalationReason::Recurrence);
    let f = e.figures.as_ref().expect("the numbers");
    assert_eq!(f.oom_kills, f.deaths);
    assert!(f.deaths >= 3 && f.deaths_per_minute >= 3.0, "{f:?}");
    assert!(
        (5.0..8.0).contains(&f.mean_life_seconds),
        "lives of ~6 s: {f:?}"
    );
    assert_eq!(f.memory_limit_bytes, Some(256 << 20));
    assert!(
        f.likely_cause
            .contains("more load than 3 replicas of 256 MiB can carry"),
        "{}",
        f.likely_cause
    );
    assert!(e.detail.contains("a minute"), "{}", e.detail);
    // People hear of the first deaths, then of the recurrence once; not of every restart.
    assert_eq!(h.sink.events(), ["healed", "healed", "escalated"]);
    assert!(h.metric(r#"healing_notifications_total{event="healed",result="suppressed"} 17"#));
    let health = &h.engine.health()["webapp"];
    assert_eq!(
        health.status, "degraded",
        "the recurrence is open: {health:?}"
    );
    assert!(h.metric(r#"healing_service_degraded{service="webapp"} 1"#));
    // A whole window without a death closes it.
    tokio::time::sleep(Duration::from_secs(601)).await;
    h.engine.tick();
    assert_eq!(h.engine.health()["webapp"].status, "ok");
    assert!(h.metric(r#"healing_service_degraded{service="webapp"} 0"#));
}

#[tokio::test(start_paused = true)]
async fn three_replicas_under_more_load_than_they_carry_all_serve_again_within_10s_of_its_end() {
    let h = Arc::new(harness(Opts::default()).await);
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let load = Arc::new(AtomicBool::new(true));
    // Each replica dies some 4-6 s after it serves, staggered, for three minutes.
    let killers: Vec<_> = h
        .names
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (h, r, load) = (h.clone(), r.clone(), load.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(700 * i as u64)).await;
                while load.load(Ordering::SeqCst) {
                    if h.rt.serving(&r) {
                        tokio::time::sleep(Duration::from_millis(4000 + 1000 * i as u64)).await;
                        if load.load(Ordering::SeqCst) {
                            h.rt.exit(&r, 137, true);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
        .collect();
    // Sample: how often at least one replica serves (what nginx needs to answer).
    let (mut samples, mut any) = (0u32, 0u32);
    let began = tokio::time::Instant::now();
    while began.elapsed() < Duration::from_secs(180) {
        samples += 1;
        any += u32::from(h.names.iter().any(|n| h.rt.serving(n)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.store(false, Ordering::SeqCst);
    for k in killers {
        k.await.unwrap();
    }
    let end = tokio::time::Instant::now();
    let all_back = h
        .until(Duration::from_secs(10), || {
            h.names.iter().all(|n| h.rt.serving(n))
        })
        .await;
    assert!(
        all_back.is_some(),
        "not every replica serves within 10 s of the load's end: {:?}",
        h.names.iter().map(|n| h.rt.status(n)).collect::<Vec<_>>()
    );
    eprintln!(
        "virtual load: some replica served {:.1} % of the time; all back {:?} after the load",
        100.0 * any as f64 / samples as f64,
        end.elapsed()
    );
    h.settle().await;
    events.abort();
    let outcomes = h.outcomes();
    assert!(
        !outcomes.contains(&Outcome::GaveUp),
        "never given up: {outcomes:?}"
    );
    let escalations: Vec<_> = h
        .incidents()
        .into_iter()
        .filter_map(|i| i.escalation)
        .collect();
    assert_eq!(escalations.len(), 1, "one escalation for the service");
    assert_eq!(escalations[0].reason, EscalationReason::Recurrence);
    assert!(h.names.iter().all(|n| h.rt.actions_on(n) >= 20));
}

#[tokio::test(start_paused = true)]
async fn a_replica_killed_six_times_in_a_minute_after_serving_is_never_given_up() {
    let h = harness(Opts::default()).await;
    let r = h.names[1].clone();
    for _ in 0..6 {
        h.until(Duration::from_secs(10), || h.rt.serving(&r))
            .await
            .expect("serving");
        tokio::time::sleep(Duration::from_secs(8)).await;
        h.rt.kill(&r);
        h.trigger_alert();
        h.settle().await;
    }
    assert!(h.rt.serving(&r));
    assert_eq!(h.rt.actions_on(&r), 6);
    assert!(
        h.outcomes().iter().all(|o| *o == Outcome::Healed),
        "{:?}",
        h.outcomes()
    );
    let classes: Vec<FailureClass> = h.incidents().iter().map(|i| i.class).collect();
    assert!(classes.iter().all(|c| *c == FailureClass::Killed));
}

#[tokio::test(start_paused = true)]
async fn a_crash_on_start_is_given_up_after_its_tries_once_then_left_alone_quietly() {
    let h = harness(Opts::default()).await;
    let r = h.names[2].clone();
    h.rt.set_behaviour(&r, Behaviour::CrashOnStart(1));
    h.rt.set_logs(
        &r,
        "starting\nerror: PORT must be a number, got \"notaport\"",
    );
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Created with a bad setting: it never served.
    h.rt.exit_after(&r, 1, false, Some(Duration::from_millis(100)));
    // Its die events keep coming; alerts repeat; the agent resyncs.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        h.trigger_alert();
        h.resync();
    }
    h.settle().await;
    assert_eq!(h.rt.actions_on(&r), 2, "two tries, then no restart loop");
    let gave_up: Vec<_> = h
        .incidents()
        .into_iter()
        .filter(|i| i.outcome == Outcome::GaveUp)
        .collect();
    assert_eq!(gave_up.len(), 1, "recorded once: {:?}", h.outcomes());
    let e = gave_up[0].escalation.as_ref().unwrap();
    assert_eq!(e.reason, EscalationReason::CrashOnStart);
    assert!(
        e.detail.contains("exit code 1") && e.detail.contains("PORT must be a number"),
        "{}",
        e.detail
    );
    assert_eq!(gave_up[0].class, FailureClass::CrashedOnStart);
    let health = &h.engine.health()["webapp"];
    assert_eq!(
        (health.status, health.given_up.clone()),
        ("degraded", vec![r.clone()])
    );
    assert!(h.metric(r#"healing_replicas_given_up{service="webapp"} 1"#));

    // Quiet from now on, through alerts and resyncs: nothing tried, recorded or sent, until one
    // quiet try 5 minutes on (the cause may be gone), which records nothing either.
    let recorded = h.incidents().len();
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        h.trigger_alert();
        h.resync();
        h.settle().await;
    }
    assert_eq!(h.rt.actions_on(&r), 2, "left alone");
    tokio::time::sleep(Duration::from_secs(60)).await;
    h.settle().await;
    assert_eq!(h.rt.actions_on(&r), 3, "one quiet try");
    assert_eq!(h.incidents().len(), recorded, "{:?}", h.outcomes());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.sink.events(), ["gave_up"]);

    // Fixed (a corrected setting): the next quiet try finds out, and says so.
    h.rt.set_behaviour(&r, Behaviour::Serves);
    assert!(h
        .until(Duration::from_secs(700), || h.rt.serving(&r))
        .await
        .is_some());
    h.settle().await;
    h.resync();
    h.settle().await;
    events.abort();
    assert_eq!(h.incidents().last().unwrap().outcome, Outcome::Healed);
    assert_eq!(h.engine.health()["webapp"].status, "ok");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.sink.events(), ["gave_up", "healed"]);
}

#[tokio::test(start_paused = true)]
async fn an_operator_reset_lets_the_agent_try_again_at_once() {
    let h = harness(Opts::default()).await;
    let r = h.names[0].clone();
    h.rt.set_behaviour(&r, Behaviour::CrashOnStart(2));
    h.rt.exit_after(&r, 2, false, Some(Duration::from_millis(100)));
    for _ in 0..3 {
        h.trigger_alert();
        h.settle().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(h.outcomes().last(), Some(&Outcome::GaveUp));
    h.rt.set_behaviour(&r, Behaviour::Serves);
    assert!(h.engine.reset(&r));
    h.settle().await;
    assert!(h.rt.serving(&r));
    assert_eq!(h.outcomes().last(), Some(&Outcome::Healed));
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_never_becomes_healthy_is_given_up_after_its_tries() {
    let h = harness(Opts::default()).await;
    let r = h.names[1].clone();
    h.rt.set_behaviour(&r, Behaviour::NeverHealthy);
    h.rt.make_unhealthy(&r);
    for _ in 0..6 {
        h.resync();
        h.settle().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert_eq!(h.rt.actions_on(&r), 2, "{:?}", h.outcomes());
    let last = h.incidents().pop().unwrap();
    assert_eq!(last.outcome, Outcome::GaveUp);
    assert_eq!(
        last.escalation.unwrap().reason,
        EscalationReason::NeverHealthy
    );
}

#[tokio::test(start_paused = true)]
async fn a_start_docker_refuses_is_escalated_once_and_healed_when_the_cause_goes() {
    let h = harness(Opts::default()).await;
    let r = h.names[0].clone();
    let words = "driver failed programming external connectivity on endpoint: Bind for 127.0.0.1:21080 failed: port is already allocated";
    h.rt.refuse_start(&r, Some(words));
    h.rt.kill(&r);
    h.trigger_alert();
    h.settle().await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        h.trigger_alert();
        h.resync();
        h.settle().await;
    }
    let incidents = h.incidents();
    assert_eq!(
        h.outcomes(),
        [Outcome::GaveUp],
        "one record, not one per resync"
    );
    let e = incidents[0].escalation.as_ref().unwrap();
    assert_eq!(e.reason, EscalationReason::Refused);
    assert!(
        e.detail.contains("port is already allocated"),
        "{}",
        e.detail
    );
    assert_eq!(h.sink.events(), ["gave_up"], "one notification");
    assert!(h.metric(r#"healing_escalations_total{reason="refused"} 1"#));
    assert_eq!(
        h.engine.health()["webapp"].given_up,
        std::slice::from_ref(&r)
    );
    assert!(h.metric(r#"healing_service_degraded{service="webapp"} 1"#));

    // The port is freed: the next quiet try (5 minutes after giving up) starts it.
    h.rt.refuse_start(&r, None);
    assert!(h
        .until(Duration::from_secs(400), || h.rt.serving(&r))
        .await
        .is_some());
    h.settle().await;
    h.resync();
    h.settle().await;
    assert_eq!(h.outcomes(), [Outcome::GaveUp, Outcome::Healed]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.sink.events(), ["gave_up", "healed"]);
    assert_eq!(h.engine.health()["webapp"].status, "ok");
    assert!(h.metric(r#"healing_service_degraded{service="webapp"} 0"#));
}
