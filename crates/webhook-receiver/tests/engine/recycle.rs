//! Preventive recycling (docs/agent.md): leaking replicas are replaced before the OOM killer gets
//! them, one at a time, never fewer than N-1 serving, not counted as deaths or repairs; when the
//! leak outpaces recycling, one escalation with the numbers and reactive healing for the rest.

use std::time::Duration;

use webhook_receiver::engine::{watch_memory, RecycleConfig, RECYCLE_LABEL};
use webhook_receiver::incidents::{EscalationReason, Outcome};

use super::*;

const MIB: u64 = 1024 * 1024;

/// All replicas (re)started now, leaking `mib_per_sec` each.
fn leak(h: &Harness, mib_per_sec: u64) {
    for n in &h.names {
        h.rt.start_outside(n);
        h.rt.set_leak(n, mib_per_sec * MIB);
    }
}

fn preventive(h: &Harness, on: bool) {
    h.engine.configure_recycle(RecycleConfig {
        all_services: on,
        ..RecycleConfig::default()
    });
}

/// Runs the agent's loops (events, memory, resync) for `secs` of virtual time; returns the
/// fewest replicas seen serving at once (looked at every 100 ms).
async fn run_for(h: &Harness, secs: u64) -> usize {
    let events = h.follow_events();
    let memory = tokio::spawn(watch_memory(h.engine.clone()));
    let mut fewest = usize::MAX;
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut tick = 0u64;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tick += 1;
        if tick % 100 == 0 {
            h.resync();
        }
        // After the first start's healthcheck (all three start together here).
        if tick > 20 {
            let serving = h.names.iter().filter(|n| h.rt.serving(n)).count();
            fewest = fewest.min(serving);
        }
    }
    memory.abort();
    events.abort();
    h.settle().await;
    fewest
}

fn recycled(h: &Harness) -> Vec<Incident> {
    h.incidents()
        .into_iter()
        .filter(|i| i.outcome == Outcome::Recycled)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn leaking_replicas_are_recycled_before_any_oom_kill_one_at_a_time() {
    let h = harness(Opts::default()).await;
    preventive(&h, true);
    // 4 MiB/s from 8 MiB: each would be OOM-killed 62 s after its start, all three together.
    leak(&h, 4);
    let fewest = run_for(&h, 300).await;
    assert_eq!(h.rt.oom_kills(), 0, "{:#?}", h.outcomes());
    assert!(fewest >= 2, "never fewer than N-1 serving, saw {fewest}");
    let r = recycled(&h);
    // Five minutes of a 62 s life: each replica at least four times.
    assert!(r.len() >= 12, "{} recycles", r.len());
    for i in &r {
        let rec = i.recycle.as_ref().unwrap();
        assert_eq!(rec.reason, "memory");
        assert_eq!(rec.exit_code, Some(0), "drained");
        assert!(rec.healthy_after_seconds.is_some());
        let m = rec.memory.as_ref().unwrap();
        assert!(m.usage_bytes < 256 * MIB);
        let trend = m.trend_bytes_per_second / MIB as f64;
        assert!((trend - 4.0).abs() < 0.2, "trend {trend} MiB/s");
        assert!(m.seconds_to_limit.unwrap() > 1.0, "{m:?}");
        assert_eq!(i.trigger, TriggerKind::Memory);
        assert!(i.escalation.is_none(), "{}", i.summary);
    }
    // Not repairs, not deaths: no healing run, no restart counted.
    assert!(
        h.outcomes().iter().all(|o| *o == Outcome::Recycled),
        "{:?}",
        h.outcomes()
    );
    assert!(h.metric("healing_restarts_total{result=\"ok\",service=\"webapp\"} 0"));
    assert!(h.metric(&format!(
        "healing_recycles_total{{reason=\"memory\",result=\"drained\",service=\"webapp\"}} {}",
        r.len()
    )));
    assert!(h.metric(&format!(
        "healing_incidents_total{{mode=\"runbook\",outcome=\"recycled\"}} {}",
        r.len()
    )));
}

#[tokio::test(start_paused = true)]
async fn off_by_default_the_same_leak_ends_in_oom_kills_healed_reactively() {
    let h = harness(Opts::default()).await;
    leak(&h, 4);
    run_for(&h, 150).await;
    assert!(h.rt.oom_kills() >= 3, "{} OOM kills", h.rt.oom_kills());
    assert!(recycled(&h).is_empty());
    assert!(h.outcomes().contains(&Outcome::Healed));
}

#[tokio::test(start_paused = true)]
async fn the_label_opts_a_service_in_and_notify_keeps_it_out() {
    let h = harness(Opts::default()).await;
    for n in &h.names {
        h.rt.label(n, RECYCLE_LABEL, "memory");
    }
    leak(&h, 4);
    run_for(&h, 150).await;
    assert_eq!(h.rt.oom_kills(), 0);
    assert!(!recycled(&h).is_empty());

    let h = harness(Opts::default()).await;
    preventive(&h, true);
    h.set_action_level("notify");
    leak(&h, 4);
    run_for(&h, 100).await;
    assert!(recycled(&h).is_empty(), "notify: the agent touches nothing");
}

#[tokio::test(start_paused = true)]
async fn when_the_leak_outpaces_recycling_it_escalates_once_with_the_numbers() {
    let h = harness(Opts::default()).await;
    preventive(&h, true);
    // A recycle takes 6 s here (the healthcheck passes 6 s after a start), and each replica
    // reaches its limit 8 s after its start: three cannot be kept up with.
    h.rt.set_healthy_after(Duration::from_secs(6));
    leak(&h, 31);
    run_for(&h, 120).await;
    let escalations: Vec<_> = h
        .incidents()
        .into_iter()
        .filter_map(|i| i.escalation)
        .filter(|e| e.reason == EscalationReason::RecycleBehind)
        .collect();
    assert_eq!(escalations.len(), 1, "once: {escalations:#?}");
    let d = &escalations[0].detail;
    assert!(
        d.contains("cannot keep up") && d.contains("MiB/s") && d.contains("replicas"),
        "{d}"
    );
    // What the recycles missed was healed.
    assert!(h.rt.oom_kills() > 0);
    assert!(
        h.outcomes().contains(&Outcome::Healed),
        "{:?}",
        h.outcomes()
    );
    assert!(h.metric("healing_escalations_total{reason=\"recycle_behind\"} 1"));
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_ignores_sigterm_is_killed_at_the_stop_timeout() {
    let h = harness(Opts::default()).await;
    preventive(&h, true);
    leak(&h, 4);
    h.rt.ignore_sigterm(&h.names[0]);
    run_for(&h, 120).await;
    let r = recycled(&h);
    let stubborn: Vec<_> = r
        .iter()
        .filter_map(|i| i.recycle.as_ref())
        .filter(|x| x.replica == h.names[0])
        .collect();
    assert!(!stubborn.is_empty());
    for x in stubborn {
        assert_eq!(x.exit_code, Some(137));
        assert!(x.stop_seconds >= 8.0, "{x:?}");
    }
    assert!(h.metrics.render().contains(
        "healing_recycles_total{reason=\"memory\",result=\"killed\",service=\"webapp\"} "
    ));
    assert_eq!(h.rt.oom_kills(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_rolling_restart_recycles_every_replica_keeping_n_minus_one_serving() {
    let h = harness(Opts::default()).await;
    let events = h.follow_events();
    let engine = h.engine.clone();
    let task = tokio::spawn(async move { engine.rolling_restart("webapp").await });
    let mut fewest = usize::MAX;
    // In flight, the service is `recycling` (/healthz says so: tests and operators wait on it).
    let mut recycling_seen = Vec::new();
    while !task.is_finished() {
        fewest = fewest.min(h.names.iter().filter(|n| h.rt.serving(n)).count());
        recycling_seen.push(h.engine.recycling());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = task.await.unwrap().unwrap();
    events.abort();
    h.settle().await;
    assert_eq!(done.len(), 3);
    assert!(done.iter().all(|r| r.ok), "{done:?}");
    assert_eq!(fewest, 2);
    assert!(
        recycling_seen.iter().any(|r| r == &["webapp".to_string()]),
        "{recycling_seen:?}"
    );
    assert!(h.engine.recycling().is_empty());
    for n in &h.names {
        assert_eq!(h.rt.actions_on(n), 2, "one stop, one start");
    }
    let r = recycled(&h);
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|i| i.trigger == TriggerKind::Operator));
    assert_eq!(h.outcomes().len(), 3, "nothing else: {:?}", h.outcomes());
    // A second one while the first runs waits for it, then rolls on its own, one at a time;
    // an unknown service is refused.
    let engine = h.engine.clone();
    let first = tokio::spawn(async move { engine.rolling_restart("webapp").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = h.engine.rolling_restart("webapp").await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert!(first.iter().chain(&second).all(|r| r.ok));
    assert_eq!(first.len() + second.len(), 6);
    assert!(h.engine.rolling_restart("nginx").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn nothing_is_recycled_while_a_replica_is_down() {
    let h = harness(Opts::default()).await;
    preventive(&h, true);
    leak(&h, 4);
    // The third crashes on every start: given up on, it stays down, so only two of three
    // serve and a recycle would leave one.
    h.rt.set_behaviour(&h.names[2], test_support::Behaviour::CrashOnStart(1));
    h.rt.exit_after(&h.names[2], 1, false, Some(Duration::from_millis(100)));
    run_for(&h, 90).await;
    assert!(recycled(&h).is_empty(), "{:?}", h.outcomes());
    // The leaking two were left to the OOM killer and healed.
    assert!(h.rt.oom_kills() >= 2);
}

#[tokio::test(start_paused = true)]
async fn a_miss_predicted_but_never_borne_out_by_a_death_is_not_escalated() {
    let h = harness(Opts::default()).await;
    preventive(&h, true);
    // The same fast leak as above, so the first look predicts a miss for the last in line;
    // then the leak stops (the load went away): nobody dies, and nobody is told.
    h.rt.set_healthy_after(Duration::from_secs(6));
    leak(&h, 31);
    let rt = h.rt.clone();
    let names = h.names.clone();
    let calm = tokio::spawn(async move {
        // Serving from 6 s (their healthcheck), at their limit at 8 s.
        tokio::time::sleep(Duration::from_millis(6600)).await;
        for n in &names {
            rt.set_leak(n, 0);
        }
    });
    run_for(&h, 60).await;
    calm.await.unwrap();
    assert_eq!(h.rt.oom_kills(), 0, "{:#?}", h.outcomes());
    assert!(!recycled(&h).is_empty(), "the predicted miss was acted on");
    let told: Vec<_> = h
        .incidents()
        .into_iter()
        .filter(|i| i.escalation.is_some())
        .map(|i| i.summary)
        .collect();
    assert!(told.is_empty(), "{told:#?}");
    assert!(h.metric("healing_escalations_total{reason=\"recycle_behind\"} 0"));
}

#[tokio::test(start_paused = true)]
async fn when_several_are_due_the_next_recycle_starts_as_one_ends_not_at_the_next_look() {
    let h = harness(Opts::default()).await;
    h.engine.configure_recycle(RecycleConfig {
        all_services: true,
        // Looks far apart: a recycle that waited for the next look would wait seconds.
        every: Duration::from_secs(3),
        ..RecycleConfig::default()
    });
    // A leak that has every replica due at once, and a healthcheck that passes 1.3 s after a
    // start (off the looks' beat).
    h.rt.set_healthy_after(Duration::from_millis(1300));
    leak(&h, 12);
    run_for(&h, 40).await;
    let mut r = recycled(&h);
    r.sort_by_key(|i| i.started_at);
    assert!(r.len() >= 3, "{} recycles: {:?}", r.len(), h.outcomes());
    let back_to_back = r
        .windows(2)
        .filter_map(|w| {
            let ended = w[0].resolved_at?;
            Some((w[1].started_at - ended).num_milliseconds())
        })
        .filter(|gap| *gap < 3000)
        .collect::<Vec<_>>();
    assert!(
        !back_to_back.is_empty(),
        "no recycle followed another within a look"
    );
    assert!(
        back_to_back.iter().all(|gap| *gap <= 300),
        "gaps after a recycle ended, ms: {back_to_back:?}"
    );
}
