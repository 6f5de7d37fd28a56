//! Docker refuses to start a replica (its published port is taken): the agent tries a few times
//! within one run, gives up with Docker's words, escalates once, and stays quiet through repeated
//! alerts; once the port is free, an operator's `POST /reset` lets it heal the replica at once.
//! Real containers on the shared daemon; the host port is a free one the system hands out (or
//! `REFUSED_TEST_PORT`).

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{spawn_agent, webapp_alert, Project, Replica};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn a_start_docker_refuses_is_escalated_once_then_healed_by_a_quiet_try() {
    let port: u16 = std::env::var("REFUSED_TEST_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        });
    let p = Project::new("refused");
    let publish = format!("127.0.0.1:{port}:8000");
    let name = p.add_with("webapp", 1, Replica::Healthy, &[], &["-p", &publish]);
    p.wait_healthy(&name, Duration::from_secs(15));
    let agent = spawn_agent(&p.name, &[]).await;
    agent.started().await;

    // Killed; its port is taken before anyone starts it again.
    p.kill(&name);
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the test port is free");
    let since = chrono::Utc::now();
    for _ in 0..3 {
        let r = agent.post_alert(&webapp_alert()).await;
        assert_eq!(r.status(), 200);
        agent.settle().await;
    }
    assert_eq!(p.status(&name), "exited");
    let incidents = agent.incidents().await;
    let outcomes: Vec<&str> = incidents
        .iter()
        .map(|i| i["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["gave_up"],
        "one record, however many alerts: {incidents:#?}"
    );
    let e = &incidents[0]["escalation"];
    assert_eq!(e["reason"], "refused", "{e}");
    let detail = e["detail"].as_str().unwrap();
    assert!(
        detail.contains("address already in use") || detail.contains("already allocated"),
        "Docker's own words: {detail}"
    );
    let attempts = incidents[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "restart_container")
        .count();
    assert_eq!(attempts, 1, "one call, its retries inside it");
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains("healing_escalations_total{reason=\"refused\"} 1"),
        "{metrics}"
    );
    let health: Value = agent.get_json("/healthz").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(
        health["service_health"]["webapp"]["given_up"],
        serde_json::json!([name])
    );

    // The port is free again; the operator says so.
    drop(squatter);
    let r = reqwest::Client::new()
        .post(format!("{}/reset?replica={name}", agent.url))
        .bearer_auth(&agent.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.status(&name) != "running" {
        assert!(Instant::now() < deadline, "{:#?}", agent.incidents().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.settle().await;
    p.wait_healthy(&name, Duration::from_secs(15));
    assert_eq!(p.starts_since(&name, since), 1);
    let incidents = agent.incidents().await;
    assert_eq!(incidents[0]["outcome"], "healed", "{incidents:#?}");
    assert_eq!(incidents.len(), 2);
    let health: Value = agent.get_json("/healthz").await;
    assert_eq!(
        health["service_health"]["webapp"]["status"], "ok",
        "given up no more, escalation closed: {health}"
    );
    agent.stop().await;
}
