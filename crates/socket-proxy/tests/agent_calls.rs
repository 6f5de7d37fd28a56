//! The agent's real Docker client (webhook-receiver's `DockerRuntime`, bollard 0.21) through the
//! proxy to the recording stand-in for dockerd: every call the agent makes passes, and reaches
//! dockerd in the rebuilt form (by id after the label check, parameters re-encoded, the project
//! filter added). This is where the allow-list was recorded from; when an update of bollard
//! changes what the agent sends, this test fails before a stack does.

mod support;

use futures_util::StreamExt;
use socket_proxy::query::encode;
use support::recorder::id_of;
use support::{send_raw, wire, Harness};
use webhook_receiver::runtime::docker::DockerRuntime;
use webhook_receiver::runtime::{ContainerRef, ContainerRuntime, RuntimeError, Status};

/// The request lines that reached the stand-in since the last call.
async fn received(h: &Harness) -> Vec<String> {
    h.upstream
        .take()
        .await
        .iter()
        .map(|conn| {
            let line = String::from_utf8_lossy(conn)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            line.trim_end_matches(" HTTP/1.1").to_string()
        })
        .collect()
}

fn replica(name: &str) -> ContainerRef {
    ContainerRef {
        // The agent keeps the id it listed, but addresses the container by name.
        id: id_of(name),
        name: name.into(),
        project: "hs".into(),
        service: "webapp".into(),
        labels: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_calls_pass_and_reach_dockerd_rebuilt() {
    let h = Harness::ours("agent").await;
    let rt = DockerRuntime::new(Some(format!("tcp://{}", h.proxy)));
    let (id1, id2) = (id_of("hs-webapp-1"), id_of("hs-webapp-2"));
    let check = |name: &str| format!("GET /containers/{name}/json");

    rt.ping().await.unwrap();
    assert_eq!(received(&h).await, ["GET /version", "GET /_ping"]);

    let listed = rt.list("hs", "webapp").await.unwrap();
    assert_eq!(
        listed.len(),
        2,
        "the daemon's answer is filtered again by the agent: {listed:?}"
    );
    let filters = encode(
        r#"{"label":["com.docker.compose.project=hs","com.docker.compose.service=webapp"]}"#,
    );
    assert_eq!(
        received(&h).await,
        [format!(
            "GET /containers/json?all=true&size=false&filters={filters}"
        )]
    );

    let state = rt.inspect(&replica("hs-webapp-1"), true).await.unwrap();
    assert_eq!(
        (state.status, state.memory_usage),
        (Status::Running, Some(1234))
    );
    assert_eq!(
        received(&h).await,
        [
            check("hs-webapp-1"),
            check("hs-webapp-1"),
            format!("GET /containers/{id1}/stats?stream=false&one-shot=true")
        ]
    );

    rt.start("hs-webapp-2").await.unwrap();
    assert_eq!(
        received(&h).await,
        [
            check("hs-webapp-2"),
            format!("POST /containers/{id2}/start")
        ]
    );
    rt.restart("hs-webapp-1", 10).await.unwrap();
    assert_eq!(
        received(&h).await,
        [
            check("hs-webapp-1"),
            format!("POST /containers/{id1}/restart?t=10")
        ]
    );
    rt.unpause("hs-webapp-1").await.unwrap();
    assert_eq!(
        received(&h).await,
        [
            check("hs-webapp-1"),
            format!("POST /containers/{id1}/unpause")
        ]
    );

    let logs = rt.logs_tail("hs-webapp-1", 50).await.unwrap();
    assert_eq!(logs, "log line from the replica\n");
    assert_eq!(
        received(&h).await,
        [
            check("hs-webapp-1"),
            format!("GET /containers/{id1}/logs?follow=false&stdout=true&stderr=true&since=0&until=0&timestamps=false&tail=50")
        ]
    );

    // The write probe: Docker's 404 for replica 0 means writes pass the proxy.
    assert!(rt.can_act("hs", "webapp").await.unwrap());
    assert_eq!(received(&h).await, [check("hs-webapp-0")]);

    let mut events = rt.events("hs").await.unwrap();
    assert!(
        events.next().await.is_none(),
        "the stand-in's event stream is empty"
    );
    let filters = encode(
        r#"{"event":["die","oom","health_status","stop","pause","kill"],"label":["com.docker.compose.project=hs"],"type":["container"]}"#,
    );
    assert_eq!(
        received(&h).await,
        [format!("GET /events?filters={filters}")]
    );

    // Out of scope: refused by the proxy, nothing sent.
    for name in ["other-webapp-1", "hs-db-1", id1.as_str()] {
        let e = rt.start(name).await.unwrap_err();
        assert!(
            matches!(&e, RuntimeError::Api(m) if m.starts_with("HTTP 403")),
            "{name}: {e}"
        );
    }
    // Named like a replica, labelled for another project: the label check refuses it.
    let e = rt.restart("hs-webapp-7", 1).await.unwrap_err();
    assert!(e.to_string().contains("labels"), "{e}");
    assert_eq!(received(&h).await, [check("hs-webapp-7")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_answers_carry_no_environment() {
    let h = Harness::ours("env").await;
    let answer = send_raw(h.proxy, &wire::get("/containers/hs-webapp-1/json")).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"Labels\""), "{text}");
    assert!(
        !text.contains("canary-env-secret"),
        "the replica's Config.Env got out: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_must_find_its_project_is_told_to_set_heal_project() {
    use clap::Parser;
    let h = Harness::ours("project").await;
    let cli = webhook_receiver::config::Cli::try_parse_from([
        "webhook-receiver",
        "--listen-addr",
        "127.0.0.1:0",
        "--docker-host",
        &format!("tcp://{}", h.proxy),
        "--incident-log",
        "",
        "--heal-project",
        "",
    ])
    .unwrap();
    let e = match webhook_receiver::Application::build(&cli.settings).await {
        Ok(_) => panic!("the agent found a project although the proxy refuses its self-inspect"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("set HEAL_PROJECT") && e.contains("403"), "{e}");
}
