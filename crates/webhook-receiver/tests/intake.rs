//! Bad requests get the right 4xx and a message saying what is wrong; nothing crashes the agent.
//! No Docker needed: the project is given, and no alert here names a healable service.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{alert_payload, spawn_agent_with, token};

#[tokio::test]
async fn bad_requests_get_the_right_4xx() {
    let agent = spawn_agent_with(
        "intaketest",
        &["--webhook-max-bytes", "4096"],
        token("s3cret"),
    )
    .await;
    let url = format!("{}/webhook", agent.url);
    let c = reqwest::Client::new();
    let good = alert_payload(&[("SomethingElse", &[("service", "database")])]);
    let post = |body: String, ct: Option<&str>, auth: Option<&str>| {
        let mut r = c.post(&url).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let json_ct = Some("application/json");
    let bearer = Some("Bearer s3cret");

    let r = post(good.to_string(), json_ct, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        post(good.to_string(), json_ct, Some("Bearer wrong"))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(good.to_string(), json_ct, Some("s3cret"))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    let r = post(good.to_string(), Some("text/plain"), bearer)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        post(good.to_string(), None, bearer).await.unwrap().status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    let big = json!({ "version": "4", "status": "firing", "alerts": [], "pad": "x".repeat(5000) });
    assert_eq!(
        post(big.to_string(), json_ct, bearer)
            .await
            .unwrap()
            .status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );

    let check_400 = |r: reqwest::Response, needle: &'static str| async move {
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v: Value = r.json().await.unwrap();
        let msg = v["error"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    };
    check_400(
        post("{not json".into(), json_ct, bearer).await.unwrap(),
        "malformed JSON",
    )
    .await;
    check_400(
        post("[1,2]".into(), json_ct, bearer).await.unwrap(),
        "not an Alertmanager webhook",
    )
    .await;
    check_400(
        post(
            json!({"version": "4", "status": "firing"}).to_string(),
            json_ct,
            bearer,
        )
        .await
        .unwrap(),
        "missing field `alerts`",
    )
    .await;
    let mut v3 = good.clone();
    v3["version"] = json!("3");
    check_400(
        post(v3.to_string(), json_ct, bearer).await.unwrap(),
        "unsupported webhook version",
    )
    .await;

    // Unknown fields (newer Alertmanager versions) are fine; charset parameters too.
    let mut newer = good.clone();
    newer["notification_reason"] = json!("repeat");
    newer["alerts"][0]["extra"] = json!({"a": 1});
    let r = post(
        newer.to_string(),
        Some("application/json; charset=utf-8"),
        bearer,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ignored"], 1, "database is not a healable service");

    // Still serving after all that, and every result was counted.
    let m = agent.metrics().await;
    for line in [
        "healing_webhooks_received_total{result=\"unauthorized\"} 3",
        "healing_webhooks_received_total{result=\"unsupported_media_type\"} 2",
        "healing_webhooks_received_total{result=\"payload_too_large\"} 1",
        "healing_webhooks_received_total{result=\"bad_request\"} 4",
        "healing_webhooks_received_total{result=\"accepted\"} 1",
    ] {
        assert!(m.contains(line), "missing {line}");
    }
    let bad_limit = c
        .get(format!("{}/incidents?limit=0", agent.url))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_limit.status(), StatusCode::BAD_REQUEST);
    let health = agent.get_json("/healthz").await;
    assert_eq!(health["services"], json!(["webapp"]));
    assert_eq!(health["project"], "intaketest");
    agent.stop().await;
}

#[tokio::test]
async fn a_megabyte_of_alerts_about_other_services_is_a_handful_of_records() {
    let agent = spawn_agent_with("floodtest", &[], token("s3cret")).await;
    let names: Vec<(String, String)> = (0..3600)
        .map(|i| (format!("Flood{i}"), format!("svc{}", i % 1800)))
        .collect();
    let alerts: Vec<(&str, Vec<(&str, &str)>)> = names
        .iter()
        .map(|(a, s)| (a.as_str(), vec![("service", s.as_str())]))
        .collect();
    let refs: Vec<(&str, &[(&str, &str)])> =
        alerts.iter().map(|(a, l)| (*a, l.as_slice())).collect();
    let body = alert_payload(&refs).to_string();
    assert!(
        body.len() > 900_000 && body.len() < 1 << 20,
        "{}",
        body.len()
    );
    let c = reqwest::Client::new();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let r = c
            .post(format!("{}/webhook", agent.url))
            .header("content-type", "application/json")
            .header("authorization", "Bearer s3cret")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["ignored"], 3600);
        eprintln!("a 1 MiB flood answered in {:?}", started.elapsed());
    }
    let incidents = agent.incidents().await;
    assert!(
        (1..=4).contains(&incidents.len()),
        "a handful, not one per alert: {}",
        incidents.len()
    );
    assert!(incidents
        .iter()
        .all(|i| i["class"] == "out_of_scope" && i["outcome"] == "no_action"));
    let m = agent.metrics().await;
    assert!(
        m.contains("healing_out_of_scope_total{result=\"deduplicated\"} 8"),
        "{m}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_rolling_restart_needs_the_token_and_a_healable_service_with_replicas() {
    let agent = spawn_agent_with("intaketest-recycle", &[], token("s3cret")).await;
    let c = reqwest::Client::new();
    let post = |path: &str, auth: Option<&str>| {
        let mut r = c.post(format!("{}{path}", agent.url));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let r = post("/recycle/webapp", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = post("/recycle/webapp", Some("Bearer wrong")).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = post("/recycle/nginx", Some("Bearer s3cret")).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("not a service this agent heals"));
    // No replica of webapp in this project: nothing to roll, said so.
    let r = post("/recycle/webapp", Some("Bearer s3cret"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().is_some(), "{body}");
    agent.stop().await;
}
