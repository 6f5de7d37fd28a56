//! `/healthz` says what a human must fix: webhook authentication turned off, Docker access
//! read-only or missing. The agent runs in-process over the in-memory runtime (no Docker needed).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::MemoryRuntime;
use webhook_receiver::clock::Clock;
use webhook_receiver::config::Secrets;

async fn start(
    rt: Arc<MemoryRuntime>,
    args: &[&str],
) -> (String, tokio::sync::oneshot::Sender<()>) {
    support::start_in_memory(rt, args, Secrets::default()).await
}

async fn healthz(url: &str) -> Value {
    reqwest::get(format!("{url}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn healthz_until(url: &str, access: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = healthz(url).await;
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
    assert_eq!(
        h["webhook_auth"], "on",
        "a token is generated when none is set"
    );
    assert_eq!(h["warnings"], serde_json::json!([]), "{h}");
    let _ = stop.send(());

    let rt = Arc::new(MemoryRuntime::new(Clock::system()));
    rt.add("p", "webapp", 1);
    let (url, stop) = start(rt.clone(), &["--webhook-auth", "none"]).await;
    let h = healthz_until(&url, "ok").await;
    assert_eq!(h["webhook_auth"], "off");
    assert!(
        h["warnings"].to_string().contains("WEBHOOK_AUTH=none"),
        "{h}"
    );
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

#[tokio::test]
async fn healthz_and_a_metric_say_degraded_while_a_replica_is_given_up_on() {
    let rt = Arc::new(MemoryRuntime::new(Clock::system()));
    let name = rt.add("p", "webapp", 1);
    rt.add("p", "webapp", 2);
    rt.set_behaviour(&name, test_support::Behaviour::CrashOnStart(1));
    rt.exit_after(&name, 1, false, Some(Duration::from_millis(100)));
    let (url, stop) = start(rt.clone(), &["--restart-backoff-ms", "10"]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let h = loop {
        let h = healthz(&url).await;
        if h["service_health"]["webapp"]["given_up"] == serde_json::json!([name]) {
            break h;
        }
        assert!(Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(h["status"], "degraded", "{h}");
    let w = &h["service_health"]["webapp"];
    assert_eq!(w["status"], "degraded");
    assert_eq!(w["escalations"][0]["reason"], "crash_on_start", "{h}");
    assert_eq!(w["serving"], 1);
    let m = metrics(&url).await;
    for line in [
        "healing_service_degraded{service=\"webapp\"} 1",
        "healing_replicas_given_up{service=\"webapp\"} 1",
        "healing_escalations_open{service=\"webapp\"} 1",
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }
    let _ = stop.send(());
}

/// An incident log, a budget file and a token file the agent cannot write (a path under a
/// regular file: ENOTDIR even for root) are faults, not reasons to stop: the agent starts, heals a
/// dead replica, keeps the incident in memory, and says what is wrong in /healthz until the files
/// can be written. Its token, generated for this process only, still reaches Alertmanager's file.
#[tokio::test]
async fn unwritable_incident_log_and_budget_are_faults_and_healing_goes_on() {
    let rt = Arc::new(MemoryRuntime::new(Clock::system()));
    let replica = rt.add("p", "webapp", 1);
    let share = std::env::temp_dir().join(format!("healthz-share-{}", std::process::id()));
    let share_arg = share.join("webhook_token").display().to_string();
    let (url, stop) = start(
        rt.clone(),
        &[
            "--incident-log",
            "/proc/self/status/incidents.jsonl",
            "--budget-state",
            "/proc/self/status/restart-budget.json",
            "--token-share",
            &share_arg,
            "--reconcile-interval",
            "1s",
        ],
    )
    .await;
    let token = std::fs::read_to_string(&share_arg).unwrap();
    assert_eq!(token.len(), 64, "a generated token, shared");
    let h = healthz_until(&url, "ok").await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(
        h["warnings"]
            .to_string()
            .contains("webhook token generated for this process only"),
        "{h}"
    );
    let storage = &h["storage"];
    assert!(
        storage["incident_log"]
            .as_str()
            .unwrap()
            .starts_with("error: cannot open incident log /proc/self/status/incidents.jsonl"),
        "{h}"
    );
    assert!(
        storage["restart_budget"]
            .as_str()
            .unwrap()
            .contains("restart-budget.json"),
        "{h}"
    );
    assert!(
        h["warnings"]
            .to_string()
            .contains("the agent keeps healing"),
        "{h}"
    );

    rt.exit(&replica, 137, true);
    let deadline = Instant::now() + Duration::from_secs(10);
    let incidents = loop {
        let list: Vec<Value> = reqwest::Client::new()
            .get(format!("{url}/incidents"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if list.iter().any(|i| i["outcome"] == "healed") {
            break list;
        }
        assert!(Instant::now() < deadline, "not healed: {list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(rt.serving(&replica), "{incidents:?}");
    let metrics = metrics(&url).await;
    let errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("healing_incident_log_errors_total{op=\"append\"}"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        errors >= 2.0,
        "the open and the append are counted: {errors}"
    );
    let h = healthz(&url).await;
    assert_eq!(h["status"], "degraded", "still unwritable: {h}");
    let _ = stop.send(());
    std::fs::remove_dir_all(&share).ok();
}

/// `healing_replica_info` names each running replica by the address Prometheus scrapes it at, so
/// a dashboard can show `p-webapp-1` instead of `10.0.0.2:8080`; a replica that stops running
/// leaves the metric within a few seconds.
#[tokio::test]
async fn replica_info_names_running_replicas_by_address() {
    let rt = Arc::new(MemoryRuntime::new(Clock::system()));
    let one = rt.add("p", "webapp", 1);
    let two = rt.add("p", "webapp", 2);
    let (url, stop) = start(
        rt.clone(),
        &["--reconcile-interval", "0", "--docker-events", "false"],
    )
    .await;
    let info = |metrics: &str| -> Vec<String> {
        let mut lines: Vec<String> = metrics
            .lines()
            .filter(|l| l.starts_with("healing_replica_info{"))
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let metrics_until = |want: usize| {
        let url = url.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let m = metrics(&url).await;
                let lines = info(&m);
                if lines.len() == want {
                    return lines;
                }
                assert!(Instant::now() < deadline, "{lines:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let lines = metrics_until(2).await;
    assert_eq!(
        lines[0],
        format!("healing_replica_info{{ip=\"10.0.0.2\",replica=\"{one}\",service=\"webapp\"}} 1")
    );
    assert!(
        lines[1].contains(&format!("replica=\"{two}\"")),
        "{lines:?}"
    );
    rt.stop(&two);
    let lines = metrics_until(1).await;
    assert!(lines[0].contains(&one), "{lines:?}");
    let _ = stop.send(());
}
