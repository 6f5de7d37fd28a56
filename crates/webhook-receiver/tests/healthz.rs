//! `/healthz` says what a human must fix: webhook authentication off, Docker access read-only or
//! missing. The agent runs in-process over the in-memory runtime (no Docker needed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;
use webhook_receiver::clock::Clock;
use webhook_receiver::config::Cli;
use webhook_receiver::runtime::memory::MemoryRuntime;
use webhook_receiver::startup::{Application, Parts};

async fn start(
    rt: Arc<MemoryRuntime>,
    args: &[&str],
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut all = vec![
        "webhook-receiver",
        "--listen-addr",
        "127.0.0.1:0",
        "--heal-project",
        "p",
        "--incident-log",
        "",
    ];
    all.extend_from_slice(args);
    let cli = Cli::try_parse_from(all).unwrap();
    cli.settings.validate().unwrap();
    let app = Application::build_with(
        &cli.settings,
        Parts {
            runtime: rt.clone(),
            prober: Some(rt),
            clock: Clock::system(),
        },
    )
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    (url, tx)
}

async fn healthz_until(url: &str, access: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h: Value = reqwest::get(format!("{url}/healthz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if h["docker_access"] == access {
            return h;
        }
        assert!(Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn healthz_warns_about_open_webhooks_and_missing_write_access() {
    let rt = Arc::new(MemoryRuntime::new(Clock::system()));
    rt.add("p", "webapp", 1);
    let (url, stop) = start(rt.clone(), &[]).await;
    let h = healthz_until(&url, "ok").await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["webhook_auth"], "off");
    let warnings = h["warnings"].to_string();
    assert!(warnings.contains("WEBHOOK_TOKEN is empty"), "{h}");
    let _ = stop.send(());

    // Through a proxy that refuses starts: the agent can look, not heal, and says so.
    let rt = Arc::new(MemoryRuntime::new(Clock::system()));
    rt.add("p", "webapp", 1);
    rt.set_read_only(true);
    let (url, stop) = start(rt.clone(), &[]).await;
    let h = healthz_until(&url, "read_only").await;
    assert_eq!(h["status"], "degraded");
    assert!(h["warnings"].to_string().contains("read-only"), "{h}");
    let _ = stop.send(());

    // Docker unreachable.
    let rt = Arc::new(MemoryRuntime::new(Clock::system()));
    rt.set_unreachable(true);
    let (url, stop) = start(rt, &[]).await;
    let h = healthz_until(&url, "missing").await;
    assert_eq!(h["docker"], "unreachable");
    let _ = stop.send(());
}
