//! Docker stopped and started again: the agent keeps serving, says so in /healthz, and recovers by
//! itself. Uses a private dockerd (own socket, data root and bridge) so the shared daemon and the
//! other tests are not disturbed. (Not `--bridge none`: that makes dockerd delete the host's docker0.)

mod support;

use std::time::{Duration, Instant};

use support::dockerd::{private_dockerd_refused, PrivateDockerd};
use support::{ensure_image_on, spawn_agent, webapp_alert, Project, Replica};

async fn wait_docker(agent: &support::Agent, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = agent.get_json("/healthz").await;
        if h["docker"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "healthz never said docker {want}: {h}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dockerd"]
async fn docker_stopped_and_started_again_the_agent_recovers_by_itself() {
    // A private dockerd needs root (its own bridge, mounts). As a user in the docker group the
    // test command skips this one test, saying so; CI runs as root.
    if let Some(why) = private_dockerd_refused() {
        eprintln!("SKIPPED docker_stopped_and_started_again: {why}");
        return;
    }
    let mut d = PrivateDockerd::new();
    let host = d.host.clone();
    // The agent starts while Docker is down: it serves and says so.
    let p = Project::on_host("outage", &host);
    let agent = spawn_agent(
        &p.name,
        &["--docker-host", &host, "--docker-events", "true"],
    )
    .await;
    wait_docker(&agent, "unreachable").await;
    assert!(agent.metrics().await.contains("healing_docker_up 0"));

    d.start();
    ensure_image_on(Some(&host)).unwrap();
    wait_docker(&agent, "reachable").await;
    let name = p.add("webapp", 1, Replica::Healthy);

    // Docker goes away (the container dies with it) and comes back.
    d.stop();
    wait_docker(&agent, "unreachable").await;
    d.start();
    wait_docker(&agent, "reachable").await;
    // The replica is down after the daemon restart (no restart policy); the events fast path is
    // reconnected, and an alert also works: either way it comes back.
    agent.post_alert(&webapp_alert()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.status(&name) != "running" {
        assert!(
            Instant::now() < deadline,
            "replica not healed after docker came back: {:#?}",
            agent.incidents().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.settle().await;
    assert!(agent
        .incidents()
        .await
        .iter()
        .any(|i| i["outcome"] == "healed"));
    assert!(agent.metrics().await.contains("healing_docker_up 1"));
    p.cleanup();
    agent.stop().await;
}
