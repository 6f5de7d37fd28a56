//! The agent against the real Docker daemon: containers labelled as compose replicas really die and
//! really come back. Run with `cargo test -- --include-ignored` (scripts/test does).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{alert_payload, spawn_agent, webapp_alert, Project, Replica};

fn outcomes(incidents: &[Value]) -> Vec<String> {
    incidents
        .iter()
        .map(|i| i["outcome"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn one_replica_killed_is_restarted_and_verified() {
    let p = Project::new("one");
    let names: Vec<_> = (1..=3)
        .map(|n| p.add("webapp", n, Replica::Healthy))
        .collect();
    for n in &names {
        p.wait_healthy(n, Duration::from_secs(15));
    }
    let agent = spawn_agent(&p.name, &[]).await;
    p.kill(&names[1]);
    let resp = agent.post_alert(&webapp_alert()).await;
    assert_eq!(resp.status(), 200);
    agent.settle().await;

    assert_eq!(p.status(&names[1]), "running");
    assert_eq!(
        p.health(&names[1]),
        "healthy",
        "verification waits for the healthcheck"
    );
    let incidents = agent.incidents().await;
    assert_eq!(outcomes(&incidents), ["healed"]);
    let inc = &incidents[0];
    assert_eq!(inc["trigger"], "alert");
    assert_eq!(inc["mode"], "runbook");
    assert!(inc["mttr_seconds"].as_f64().unwrap() > 0.0);
    let down: Vec<_> = inc["diagnosis"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["needs_healing"] == true)
        .collect();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0]["name"], names[1].as_str());
    assert_eq!(down[0]["exit_code"], 137);
    assert_eq!(
        down[0]["oom_killed"], false,
        "a docker kill is not an OOM kill"
    );
    let restarts: Vec<_> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "restart_container" && a["result"] == "ok")
        .collect();
    assert_eq!(restarts.len(), 1);
    assert_eq!(restarts[0]["detail"]["action"], "started");
    assert!(agent
        .metrics()
        .await
        .contains("healing_restarts_total{result=\"ok\",service=\"webapp\"} 1"));
    // Survives a restart of the agent: the log is replayed.
    let dir = agent.dir.clone();
    agent.stop().await;
    let log = std::fs::read_to_string(dir.join("incidents.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn all_replicas_killed_all_come_back() {
    let p = Project::new("all");
    let names: Vec<_> = (1..=3)
        .map(|n| p.add("webapp", n, Replica::Healthy))
        .collect();
    let agent = spawn_agent(&p.name, &[]).await;
    for n in &names {
        p.kill(n);
    }
    agent.post_alert(&webapp_alert()).await;
    agent.settle().await;
    for n in &names {
        assert_eq!(p.status(n), "running", "{n}");
        assert_eq!(p.health(n), "healthy", "{n}");
    }
    let incidents = agent.incidents().await;
    assert_eq!(outcomes(&incidents), ["healed"]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn other_services_and_projects_are_never_touched() {
    let p = Project::new("scope");
    let other = Project::new("scopeother");
    let mine = p.add("webapp", 1, Replica::Healthy);
    let nginx = p.add("nginx", 1, Replica::Healthy);
    let foreign = other.add("webapp", 1, Replica::Healthy);
    for n in [&mine, &nginx] {
        p.kill(n);
    }
    other.kill(&foreign);
    let agent = spawn_agent(&p.name, &[]).await;
    // Alerts that try to widen the scope: another service, another project's container, a prefix.
    let body = alert_payload(&[
        ("NginxDown", &[("service", "nginx")]),
        (
            "Sneaky",
            &[("job", "webapp*"), ("container", foreign.as_str())],
        ),
        ("Prefix", &[("service", "web")]),
    ]);
    let resp = agent.post_alert(&body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["ignored"], 3, "{v}");
    agent.settle().await;
    assert!(agent.incidents().await.is_empty());
    assert_eq!(p.status(&mine), "exited");
    assert_eq!(p.status(&nginx), "exited");
    assert_eq!(other.status(&foreign), "exited");

    // A proper webapp alert naming the other project's container heals only our webapp.
    let body = alert_payload(&[(
        "WebappReplicaMissing",
        &[("service", "webapp"), ("container", foreign.as_str())],
    )]);
    agent.post_alert(&body).await;
    agent.settle().await;
    assert_eq!(p.status(&mine), "running");
    assert_eq!(
        p.status(&nginx),
        "exited",
        "nginx is not a healable service"
    );
    assert_eq!(
        other.status(&foreign),
        "exited",
        "other projects are never touched"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn duplicate_notifications_start_each_dead_replica_exactly_once() {
    let p = Project::new("dup");
    let names: Vec<_> = (1..=3)
        .map(|n| p.add("webapp", n, Replica::Healthy))
        .collect();
    let agent = spawn_agent(&p.name, &[]).await;
    p.kill(&names[0]);
    p.kill(&names[2]);
    let since = chrono::Utc::now();
    let body = webapp_alert();
    let client = reqwest::Client::new();
    let sends = (0..200).map(|_| {
        let client = client.clone();
        let url = format!("{}/webhook", agent.url);
        let body = body.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(Ok(200)))),
        "every notification answered 200"
    );
    agent.settle().await;
    // And the same again after healing: a recorded no-op, never a second start.
    agent.post_alert(&body).await;
    agent.settle().await;
    assert_eq!(p.starts_since(&names[0], since), 1);
    assert_eq!(p.starts_since(&names[1], since), 0);
    assert_eq!(p.starts_since(&names[2], since), 1);
    let outs = outcomes(&agent.incidents().await);
    assert_eq!(
        outs.iter().filter(|o| *o == "healed").count(),
        1,
        "{outs:?}"
    );
    assert!(
        outs.iter()
            .filter(|o| *o != "healed")
            .all(|o| o == "no_action"),
        "{outs:?}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn a_crash_loop_stops_at_the_budget_and_says_gave_up() {
    let p = Project::new("loop");
    let name = p.add("webapp", 1, Replica::CrashLoop);
    p.wait_status(&name, "exited", Duration::from_secs(10));
    let agent = spawn_agent(
        &p.name,
        &["--restart-budget", "3", "--verify-timeout-secs", "3"],
    )
    .await;
    let since = chrono::Utc::now();
    let mut outs = Vec::new();
    for _ in 0..5 {
        p.wait_status(&name, "exited", Duration::from_secs(10));
        agent.post_alert(&webapp_alert()).await;
        agent.settle().await;
        outs = outcomes(&agent.incidents().await);
        if outs.first().map(String::as_str) == Some("gave_up") {
            break;
        }
    }
    // Newest first: three failed attempts, then the agent gives up.
    assert_eq!(outs, ["gave_up", "failed", "failed", "failed"], "{outs:?}");
    assert_eq!(
        p.starts_since(&name, since),
        3,
        "no start beyond the budget"
    );
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains("healing_circuit_breakers_open{service=\"webapp\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("healing_incidents_total{mode=\"runbook\",outcome=\"gave_up\"} 1"));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn dry_run_changes_nothing() {
    let p = Project::new("dry");
    let name = p.add("webapp", 1, Replica::Healthy);
    p.kill(&name);
    let since = chrono::Utc::now();
    let agent = spawn_agent(&p.name, &["--dry-run", "true"]).await;
    agent.post_alert(&webapp_alert()).await;
    agent.settle().await;
    assert_eq!(p.status(&name), "exited");
    assert_eq!(p.starts_since(&name, since), 0);
    let incidents = agent.incidents().await;
    assert_eq!(outcomes(&incidents), ["dry_run"]);
    let would: Vec<_> = incidents[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["detail"]["would"] == "start")
        .collect();
    assert_eq!(
        would.len(),
        1,
        "the incident records what would have been done"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn docker_events_heal_without_an_alert_and_unhealthy_replicas_are_restarted() {
    let p = Project::new("events");
    let a = p.add("webapp", 1, Replica::Healthy);
    let b = p.add("webapp", 2, Replica::Healthy);
    p.wait_healthy(&a, Duration::from_secs(15));
    p.wait_healthy(&b, Duration::from_secs(15));
    let agent = spawn_agent(&p.name, &["--docker-events", "true"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the event stream attach
                                                          // No waiting for "exited": the events path may have it running again before a poll sees it.
    p.docker(&["kill", &a]).unwrap();
    // Running but unhealthy: the healthcheck starts failing.
    p.docker(&["exec", &b, "touch", "/tmp/unhealthy"]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(restarted_by_agent(&agent).await
        && p.status(&a) == "running"
        && p.health(&b) == "healthy")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not healed by events: {:#?}",
            agent.incidents().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.settle().await;
    let incidents = agent.incidents().await;
    assert!(
        incidents.iter().all(|i| i["trigger"] == "event"),
        "no alert was sent"
    );
    let started_a = incidents.iter().any(|i| {
        i["timeline"].as_array().is_some_and(|t| {
            t.iter()
                .any(|x| x["target"] == a.as_str() && x["detail"]["action"] == "started")
        })
    });
    assert!(
        started_a,
        "the killed replica was started by the agent: {incidents:#?}"
    );
    assert!(
        restarted_by_agent(&agent).await,
        "the unhealthy replica was restarted: {incidents:?}"
    );
    agent.stop().await;
}

async fn restarted_by_agent(agent: &support::Agent) -> bool {
    agent.incidents().await.iter().any(|i| {
        i["timeline"]
            .as_array()
            .map(|t| t.iter().any(|a| a["detail"]["action"] == "restarted"))
            .unwrap_or(false)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn a_replica_that_came_up_healthy_before_dying_is_not_a_crash_loop() {
    // Like replicas OOM-killed every few seconds under load: each run is short, but each one was
    // healthy for the stable period (1 s here) and served. The budget of 2 must not turn that
    // into gave_up.
    let p = Project::new("served");
    let name = p.add("webapp", 1, Replica::Healthy);
    let agent = spawn_agent(
        &p.name,
        &["--restart-budget", "2", "--restart-stable-secs", "1s"],
    )
    .await;
    for round in 0..4 {
        p.wait_healthy(&name, Duration::from_secs(15));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        p.kill(&name);
        agent.post_alert(&webapp_alert()).await;
        agent.settle().await;
        assert_eq!(p.status(&name), "running", "round {round}");
    }
    let outs = outcomes(&agent.incidents().await);
    assert_eq!(outs, ["healed"; 4], "{outs:?}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn one_passed_healthcheck_is_not_a_stable_period() {
    // Finding 6 of issue 8: a replica that dies right after its first passed healthcheck (on its
    // first real request) must spend its budget, not restart at full speed for ever.
    let p = Project::new("unstable");
    let name = p.add("webapp", 1, Replica::Healthy);
    let agent = spawn_agent(
        &p.name,
        &["--restart-budget", "2", "--restart-stable-secs", "30"],
    )
    .await;
    for round in 0..3 {
        p.wait_healthy(&name, Duration::from_secs(15));
        p.kill(&name);
        agent.post_alert(&webapp_alert()).await;
        agent.settle().await;
        let expected = if round < 2 { "running" } else { "exited" };
        assert_eq!(p.status(&name), expected, "round {round}");
    }
    let outs = outcomes(&agent.incidents().await);
    assert_eq!(
        outs,
        ["gave_up", "healed", "healed"],
        "newest first: {outs:?}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn a_graceful_stop_is_left_to_the_alert_path_but_a_kill_is_healed_at_once() {
    let p = Project::new("stop");
    let a = p.add("webapp", 1, Replica::Healthy);
    let b = p.add("webapp", 2, Replica::Healthy);
    let agent = spawn_agent(&p.name, &["--docker-events", "true"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the event stream attach
                                                          // An operator (or `docker compose stop`/`down`) stops a replica: exit 0 via its TERM trap.
    p.docker(&["stop", "-t", "5", &a]).unwrap();
    assert_eq!(p.inspect(&a)["State"]["ExitCode"], 0);
    // A kill (exit 137, as an OOM kill) of the other one is healed by the fast path alone.
    p.docker(&["kill", &b]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while p.status(&b) != "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the killed replica was not healed by events"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.settle().await;
    assert_eq!(
        p.status(&a),
        "exited",
        "the fast path does not undo a requested stop"
    );
    // A still-missing replica is what the alert path is for.
    agent.post_alert(&webapp_alert()).await;
    agent.settle().await;
    assert_eq!(p.status(&a), "running");
    agent.stop().await;
}
