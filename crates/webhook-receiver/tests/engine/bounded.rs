//! Bounded work: a flood of alerts about other services is a handful of records, costs no task
//! per alert, and never pushes real incidents out of `/incidents`.

use std::time::Duration;

use webhook_receiver::engine::OutOfScopeAlert;
use webhook_receiver::incidents::{FailureClass, Outcome, KEEP_NOISE};

use super::*;

fn alert(h: &Harness, service: &str, name: &str) -> OutOfScopeAlert {
    let mut trigger = h.alert();
    trigger.name = name.to_string();
    OutOfScopeAlert {
        named: service.to_string(),
        why: format!("the alert is about service {service:?}"),
        trigger,
    }
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_alerts_about_other_services_is_a_handful_of_records() {
    let h = harness(Opts::default()).await;
    h.rt.kill(&h.names[0]);
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.outcomes(), [Outcome::Healed]);

    // About 1 MiB of alerts: one service under many names, and many services.
    let mut flood: Vec<OutOfScopeAlert> = (0..5000)
        .map(|i| alert(&h, "nginx", &format!("NginxAlert{i}")))
        .collect();
    flood.extend((0..5000).map(|i| alert(&h, &format!("svc{i}"), "Down")));
    h.engine.out_of_scope(flood.clone()).await;
    let noise = |h: &Harness| {
        h.incidents()
            .iter()
            .filter(|i| i.class == FailureClass::OutOfScope)
            .count()
    };
    assert!(
        noise(&h) <= 4,
        "a handful: {:?}",
        h.incidents()
            .iter()
            .map(|i| (&i.service, i.class))
            .collect::<Vec<_>>()
    );
    let nginx = h
        .incidents()
        .into_iter()
        .find(|i| i.service == "nginx")
        .unwrap();
    assert!(
        nginx
            .scope_note
            .as_deref()
            .unwrap()
            .starts_with("5000 alerts"),
        "{:?}",
        nginx.scope_note
    );
    assert!(nginx.triggers.len() <= 10, "named alerts are bounded");
    // The same flood again: recorded already.
    h.engine.out_of_scope(flood).await;
    assert!(noise(&h) <= 4);
    assert!(
        h.metric(r#"healing_out_of_scope_total{result="deduplicated"} 4"#),
        "{}",
        h.metrics.render()
    );

    // Hours of new floods: noise keeps to its own room; the real incident stays.
    for round in 0..200 {
        let fresh: Vec<_> = (0..50)
            .map(|i| alert(&h, &format!("r{round}s{i}"), "Down"))
            .collect();
        h.engine.out_of_scope(fresh).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert!(noise(&h) <= KEEP_NOISE, "{}", noise(&h));
    assert!(
        h.incidents().iter().any(|i| i.outcome == Outcome::Healed),
        "the real incident was not pushed out"
    );
    let dropped = h
        .metrics
        .render()
        .lines()
        .find(|l| l.starts_with(r#"healing_out_of_scope_total{result="dropped"}"#))
        .unwrap()
        .to_string();
    assert!(!dropped.ends_with(" 0"), "{dropped}");
}
