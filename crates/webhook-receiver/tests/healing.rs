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
    agent.started().await;
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
    assert_eq!(restarts[0]["detail"]["action"], "start");
    assert_eq!(inc["class"], "killed");
    assert_eq!(down[0]["class"], "killed");
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
    agent.started().await;
    let since = chrono::Utc::now();
    for n in &names {
        p.kill(n);
    }
    agent.post_alert(&webapp_alert()).await;
    agent.settle().await;
    for n in &names {
        assert_eq!(p.status(n), "running", "{n}");
        assert_eq!(p.health(n), "healthy", "{n}");
        assert_eq!(p.starts_since(n, since), 1, "{n}");
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
    let agent = spawn_agent(&p.name, &[]).await;
    agent.started().await;
    for n in [&mine, &nginx] {
        p.kill(n);
    }
    other.kill(&foreign);
    // Alerts that try to widen the scope: another service, another project's container, a prefix.
    let body = alert_payload(&[
        ("NginxDown", &[("service", "nginx")]),
        (
            "Sneaky",
            &[("job", "webapp*"), ("container", foreign.as_str())],
        ),
        ("Prefix", &[("service", "web")]),
        (
            "OtherProject",
            &[
                ("service", "webapp"),
                ("compose_project", other.name.as_str()),
            ],
        ),
    ]);
    let resp = agent.post_alert(&body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["ignored"], 4, "{v}");
    agent.settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Each is recorded as out of scope (whose problem it is), and nothing is touched.
    let incidents = agent.incidents().await;
    assert_eq!(incidents.len(), 4, "{incidents:#?}");
    for i in &incidents {
        assert_eq!(i["class"], "out_of_scope", "{i}");
        assert_eq!(i["outcome"], "no_action", "{i}");
        assert!(
            i["scope_note"]
                .as_str()
                .unwrap()
                .contains("route this alert"),
            "{i}"
        );
        assert!(i["timeline"].as_array().unwrap().is_empty());
    }
    // The same alerts again: recorded once.
    agent.post_alert(&body).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(agent.incidents().await.len(), 4);
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
    assert_eq!(agent.incidents().await[0]["outcome"], "healed");
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
    agent.started().await;
    p.kill(&names[0]);
    p.kill(&names[2]);
    let since = chrono::Utc::now();
    let body = webapp_alert();
    let client = reqwest::Client::new();
    let sends = (0..200).map(|_| {
        let client = client.clone();
        let url = format!("{}/webhook", agent.url);
        let body = body.clone();
        let token = agent.token.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
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
async fn a_crash_on_start_is_tried_twice_then_escalated_once() {
    let p = Project::new("loop");
    let name = p.add("webapp", 1, Replica::CrashLoop);
    p.wait_status(&name, "exited", Duration::from_secs(10));
    let since = chrono::Utc::now();
    let agent = spawn_agent(&p.name, &["--verify-timeout-secs", "5"]).await;
    // The start-up reconcile finds it, tries, and retries by itself (requeue); alerts repeat.
    for _ in 0..6 {
        agent.post_alert(&webapp_alert()).await;
        agent.settle().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    agent.settle().await;
    let incidents = agent.incidents().await;
    let outs = outcomes(&incidents);
    assert_eq!(
        p.starts_since(&name, since),
        2,
        "a couple of tries, then no restart loop: {outs:?}"
    );
    assert_eq!(
        outs.iter().filter(|o| *o == "gave_up").count(),
        1,
        "given up once, recorded once: {outs:?}"
    );
    let gave_up = incidents
        .iter()
        .find(|i| i["outcome"] == "gave_up")
        .unwrap();
    assert_eq!(gave_up["class"], "crashed_on_start");
    let e = &gave_up["escalation"];
    assert_eq!(e["reason"], "crash_on_start", "{gave_up}");
    assert!(e["detail"].as_str().unwrap().contains("exit code 1"), "{e}");
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains("healing_escalations_total{reason=\"crash_on_start\"} 1"),
        "{metrics}"
    );
    // An operator reset lets the agent try again (it still crashes: two more tries at most).
    let resp = reqwest::Client::new()
        .post(format!("{}/reset?replica={name}", agent.url))
        .bearer_auth(&agent.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    agent.settle().await;
    assert!(p.starts_since(&name, since) > 2);
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
    agent.started().await;
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
        "no alert was sent: {incidents:#?}"
    );
    let started_a = incidents.iter().any(|i| {
        i["timeline"].as_array().is_some_and(|t| {
            t.iter()
                .any(|x| x["target"] == a.as_str() && x["detail"]["action"] == "start")
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
            .map(|t| t.iter().any(|a| a["detail"]["action"] == "restart"))
            .unwrap_or(false)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn a_replica_that_served_before_dying_is_never_given_up_however_often_it_dies() {
    // Like replicas OOM-killed under load: each life is short, but each served. The agent keeps
    // restarting it (no budget to spend) and tells people once that it recurs.
    let p = Project::new("served");
    let name = p.add("webapp", 1, Replica::Healthy);
    let agent = spawn_agent(&p.name, &["--restart-stable-secs", "30"]).await;
    agent.started().await;
    for round in 0..6 {
        p.wait_healthy(&name, Duration::from_secs(15));
        p.kill(&name);
        agent.post_alert(&webapp_alert()).await;
        agent.settle().await;
        assert_eq!(p.status(&name), "running", "round {round}");
    }
    let incidents = agent.incidents().await;
    let outs = outcomes(&incidents);
    assert_eq!(outs, ["healed"; 6], "{outs:?}");
    let escalated: Vec<_> = incidents
        .iter()
        .filter(|i| !i["escalation"].is_null())
        .collect();
    assert_eq!(escalated.len(), 1, "{incidents:#?}");
    let e = &escalated[0]["escalation"];
    assert_eq!(e["reason"], "recurrence");
    assert!(
        e["figures"]["deaths_per_minute"].as_f64().unwrap() > 0.0,
        "{e}"
    );
    let health = agent.get_json("/healthz").await;
    assert_eq!(
        health["status"], "degraded",
        "the recurrence is open: {health}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn a_replica_stopped_on_purpose_stays_stopped_while_a_killed_one_is_healed_at_once() {
    let p = Project::new("stop");
    let a = p.add("webapp", 1, Replica::Healthy);
    let b = p.add("webapp", 2, Replica::Healthy);
    let agent = spawn_agent(&p.name, &["--docker-events", "true"]).await;
    agent.started().await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the event stream attach
    let since = chrono::Utc::now();
    // An operator (or `docker compose stop`) stops a replica: exit 0 via its TERM trap.
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
    // The alert about the missing replica, repeated: still left stopped, recorded once.
    for _ in 0..3 {
        agent.post_alert(&webapp_alert()).await;
        agent.settle().await;
    }
    assert_eq!(
        p.status(&a),
        "exited",
        "a requested stop is respected by every path"
    );
    assert_eq!(p.starts_since(&a, since), 0);
    let incidents = agent.incidents().await;
    let stopped: Vec<_> = incidents
        .iter()
        .filter(|i| i["class"] == "stopped_on_purpose")
        .collect();
    assert_eq!(stopped.len(), 1, "{incidents:#?}");
    assert_eq!(stopped[0]["outcome"], "no_action");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn a_paused_replica_is_unpaused_by_the_events_path() {
    // Docker 20.10 as found here: a paused replica reports unhealthy and emits `pause`.
    let p = Project::new("pause");
    let a = p.add("webapp", 1, Replica::Healthy);
    p.wait_healthy(&a, Duration::from_secs(15));
    let agent = spawn_agent(&p.name, &["--docker-events", "true"]).await;
    agent.started().await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the event stream attach
    p.docker(&["pause", &a]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(p.status(&a) == "running" && p.health(&a) == "healthy") {
        assert!(
            std::time::Instant::now() < deadline,
            "still {} / {}: {:#?}",
            p.status(&a),
            p.health(&a),
            agent.incidents().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.settle().await;
    let incidents = agent.incidents().await;
    let healed: Vec<_> = incidents
        .iter()
        .filter(|i| i["outcome"] == "healed")
        .collect();
    assert_eq!(healed.len(), 1, "{incidents:#?}");
    assert_eq!(healed[0]["class"], "hung");
    let acts: Vec<_> = healed[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["action"] == "restart_container" && x["result"] == "ok")
        .map(|x| x["detail"]["action"].clone())
        .collect();
    assert_eq!(acts, [serde_json::json!("unpause")]);
    agent.stop().await;
}

/// One replica labelled `healstack.action=<level>`, killed, then two alerts, with the Docker
/// events followed meanwhile: the replica must stay down, never started. Both alerts and the
/// death's event must have reached the engine (a level that is only honoured because nothing
/// arrived proves nothing). Returns the incidents.
async fn killed_replica_at_action_level(level: &str) -> Vec<serde_json::Value> {
    let p = Project::new(&format!("{level}lvl"));
    let label = format!("healstack.action={level}");
    let a = p.add_labelled("webapp", 1, Replica::Healthy, &[label.as_str()]);
    let agent = spawn_agent(&p.name, &["--docker-events", "true"]).await;
    agent.started().await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the event stream attach
    let since = chrono::Utc::now();
    p.kill(&a);
    for _ in 0..2 {
        let resp = agent.post_alert(&webapp_alert()).await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["triggered"], serde_json::json!(["webapp"]), "{v}");
        agent.settle().await;
    }
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains("healing_triggers_total{kind=\"alert\"} 2"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("healing_triggers_total{kind=\"event\"} 0"),
        "the death's event reached the engine: {metrics}"
    );
    assert_eq!(p.status(&a), "exited");
    assert_eq!(p.starts_since(&a, since), 0);
    let incidents = agent.incidents().await;
    agent.stop().await;
    incidents
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn a_service_labelled_notify_is_diagnosed_never_acted_on() {
    let incidents = killed_replica_at_action_level("notify").await;
    assert_eq!(outcomes(&incidents), ["notified"], "{incidents:#?}");
    assert_eq!(incidents[0]["action_level"], "notify");
    assert_eq!(incidents[0]["class"], "killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn a_service_labelled_off_is_left_alone_and_records_nothing() {
    let incidents = killed_replica_at_action_level("off").await;
    assert!(incidents.is_empty(), "{incidents:#?}");
}
