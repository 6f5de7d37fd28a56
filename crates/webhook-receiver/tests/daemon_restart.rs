//! The Docker daemon restarted (a host reboot, a Docker upgrade): replicas it stopped come back
//! within 30 s of Docker answering, without an alert, whether the agent stayed up or went down
//! with the daemon; a replica an operator stopped before stays stopped. On a private dockerd
//! (tests/support/dockerd.rs), never the shared one.

mod support;

use std::time::{Duration, Instant};

use support::dockerd::{private_dockerd_refused, PrivateDockerd};
use support::{ensure_image_on, spawn_agent, Project, Replica};

/// Waits until every one of `names` runs and passes its healthcheck; returns how long it took.
async fn all_serving(p: &Project, names: &[String], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if names
            .iter()
            .all(|n| p.status(n) == "running" && p.health(n) == "healthy")
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "not serving after {limit:?}: {:?}",
            names
                .iter()
                .map(|n| (p.status(n), p.health(n)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dockerd (root)"]
async fn after_a_daemon_restart_replicas_serve_again_and_an_operators_stop_stands() {
    if let Some(why) = private_dockerd_refused() {
        eprintln!("SKIPPED after_a_daemon_restart: {why}");
        return;
    }
    let mut d = PrivateDockerd::new();
    let host = d.host.clone();
    d.start();
    ensure_image_on(Some(&host)).unwrap();
    let p = Project::on_host("reboot", &host);
    let names: Vec<String> = (1..=3)
        .map(|n| p.add("webapp", n, Replica::Healthy))
        .collect();
    all_serving(&p, &names, Duration::from_secs(30)).await;
    let state = support::tempdir("reboot-state").unwrap();
    let log = state.join("incidents.jsonl").display().to_string();
    let args = [
        "--docker-host",
        host.as_str(),
        "--docker-events",
        "true",
        "--incident-log",
        log.as_str(),
    ];
    let agent = spawn_agent(&p.name, &args).await;
    agent.started().await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the event stream attach

    // An operator stops one replica; it must stay stopped through everything below.
    let stopped = names[2].clone();
    p.docker(&["stop", "-t", "5", &stopped]).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let since = chrono::Utc::now();
    let restored = &names[..2];

    // 1. The agent stays up (it runs outside Docker) while the daemon restarts.
    d.stop();
    d.start();
    let took = all_serving(&p, restored, Duration::from_secs(30)).await;
    eprintln!("daemon restart, agent up: every replica serves {took:?} after Docker answers");
    agent.settle().await;
    assert_eq!(p.status(&stopped), "exited", "the operator's stop stands");
    assert_eq!(p.starts_since(&stopped, since), 0);
    let incidents = agent.incidents().await;
    let healed = incidents
        .iter()
        .find(|i| i["outcome"] == "healed")
        .expect("the replicas were healed");
    assert_ne!(healed["trigger"], "alert", "no alert was needed");
    let reason = healed["diagnosis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == restored[0].as_str())
        .unwrap()["reason"]
        .to_string();
    assert!(reason.contains("no stop request"), "{reason}");
    assert!(agent.metrics().await.contains("healing_docker_up 1"));

    // 2. The agent goes down with the daemon (as it does in the stack) and starts after it: what
    //    it saw is on disk.
    agent.stop().await;
    let since = chrono::Utc::now();
    d.stop();
    d.start();
    let answered = Instant::now();
    let agent = spawn_agent(&p.name, &args).await;
    all_serving(&p, restored, Duration::from_secs(30)).await;
    eprintln!(
        "daemon restart, agent restarted with it: every replica serves {:?} after Docker answers",
        answered.elapsed()
    );
    agent.settle().await;
    assert_eq!(
        p.status(&stopped),
        "exited",
        "the operator's stop still stands"
    );
    assert_eq!(p.starts_since(&stopped, since), 0);
    agent.stop().await;
    p.cleanup();
    std::fs::remove_dir_all(state).ok();
}
