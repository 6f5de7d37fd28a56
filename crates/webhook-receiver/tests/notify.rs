//! Notifications to a real local HTTP receiver: the generic JSON body, Slack's format, retries,
//! and a receiver that hangs never holding up healing. One test function: `NOTIFY_URL` is read
//! from the process environment (it is a secret, never a flag).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use support::{spawn_agent, webapp_alert, Project, Replica};

#[derive(Clone, Default)]
struct Sink {
    bodies: Arc<Mutex<Vec<Value>>>,
    requests: Arc<AtomicUsize>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<AtomicUsize>,
    hang: bool,
}

async fn receive(State(s): State<Sink>, Json(body): Json<Value>) -> StatusCode {
    s.requests.fetch_add(1, Ordering::SeqCst);
    if s.hang {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    if s.fail_first.load(Ordering::SeqCst) > 0 {
        s.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    s.bodies.lock().unwrap().push(body);
    StatusCode::OK
}

async fn start_sink(sink: Sink) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook/secret-part", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook/secret-part", post(receive))
        .with_state(sink);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn notifications_reach_a_real_receiver_and_never_hold_up_healing() {
    let p = Project::new("notify");
    let names: Vec<_> = (1..=2)
        .map(|n| p.add("webapp", n, Replica::Healthy))
        .collect();

    // 1. JSON, with a receiver that fails once: retried, delivered once.
    let sink = Sink::default();
    sink.fail_first.store(1, Ordering::SeqCst);
    std::env::set_var("NOTIFY_URL", start_sink(sink.clone()).await);
    let agent = spawn_agent(&p.name, &[]).await;
    agent.started().await;
    p.kill(&names[0]);
    agent.post_alert(&webapp_alert()).await;
    agent.settle().await;
    wait_for("a delivered notification", || {
        !sink.bodies.lock().unwrap().is_empty()
    })
    .await;
    let body = sink.bodies.lock().unwrap()[0].clone();
    let incident = agent.incidents().await[0].clone();
    assert_eq!(body["event"], "healed", "{body}");
    assert_eq!(body["incident_id"], incident["id"]);
    assert_eq!(body["service"], "webapp");
    assert_eq!(body["replicas"][0]["name"], names[0].as_str());
    assert_eq!(body["replicas"][0]["class"], "killed");
    assert_eq!(incident["notifications"], serde_json::json!(["healed"]));
    assert_eq!(
        sink.requests.load(Ordering::SeqCst),
        2,
        "one 500, one retry"
    );
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains(r#"healing_notifications_total{event="healed",result="delivered"} 1"#),
        "{metrics}"
    );
    let log = std::fs::read_to_string(agent.dir.join("incidents.jsonl")).unwrap();
    assert!(
        !log.contains("secret-part"),
        "the URL is a secret: never recorded"
    );
    agent.stop().await;

    // 2. Slack's incoming-webhook format.
    let sink = Sink::default();
    std::env::set_var("NOTIFY_URL", start_sink(sink.clone()).await);
    let agent = spawn_agent(&p.name, &["--notify-format", "slack"]).await;
    agent.started().await;
    p.kill(&names[1]);
    agent.post_alert(&webapp_alert()).await;
    agent.settle().await;
    wait_for("a slack notification", || {
        !sink.bodies.lock().unwrap().is_empty()
    })
    .await;
    let body = sink.bodies.lock().unwrap()[0].clone();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("*webapp*") && text.contains("healed"),
        "{text}"
    );
    assert_eq!(body.as_object().unwrap().len(), 1, "only `text`: {body}");
    agent.stop().await;

    // 3. A receiver that hangs: healing goes on at full speed; the notification fails.
    let sink = Sink {
        hang: true,
        ..Sink::default()
    };
    std::env::set_var("NOTIFY_URL", start_sink(sink.clone()).await);
    let agent = spawn_agent(&p.name, &["--notify-timeout", "500ms"]).await;
    agent.started().await;
    p.kill(&names[0]);
    let t0 = Instant::now();
    agent.post_alert(&webapp_alert()).await;
    agent.settle().await;
    let healed_in = t0.elapsed();
    assert_eq!(p.status(&names[0]), "running");
    assert!(
        healed_in < Duration::from_secs(15),
        "healing waited for the receiver: {healed_in:?}"
    );
    let m = agent.metrics().await;
    let failed = r#"healing_notifications_total{event="healed",result="failed"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut m = m;
    while !m.contains(failed) {
        assert!(Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        m = agent.metrics().await;
    }
    std::env::remove_var("NOTIFY_URL");
    agent.stop().await;
}
