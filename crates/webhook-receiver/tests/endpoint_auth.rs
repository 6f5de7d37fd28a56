//! The agent's endpoints from a caller without the token: everything that reveals or changes
//! state answers 401 (routes added later included: the router denies by default); health and
//! metrics stay open; the page at `/` shows its login form and no data (its cookie is tested in
//! `page.rs`). The real router, served on port 0 over the in-memory runtime.

mod support;

use std::sync::Arc;

use reqwest::StatusCode;
use test_support::MemoryRuntime;
use webhook_receiver::clock::Clock;

const TOKEN: &str = "endpoint-auth-token-9b2e";

async fn start(args: &[&str]) -> (String, tokio::sync::oneshot::Sender<()>) {
    let rt = Arc::new(MemoryRuntime::new(Clock::system()));
    rt.add("p", "webapp", 1);
    support::start_in_memory(rt, args, support::token(TOKEN)).await
}

async fn status(method: &str, url: &str, auth: Option<&str>) -> StatusCode {
    let c = reqwest::Client::new();
    let mut r = c.request(method.parse().unwrap(), url);
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    if method == "POST" {
        r = r
            .header("content-type", "application/json")
            .body(r#"{"version":"4","status":"firing","alerts":[]}"#);
    }
    r.send().await.unwrap().status()
}

#[tokio::test]
async fn state_endpoints_need_the_token_health_and_metrics_do_not() {
    let (url, stop) = start(&[]).await;
    let good = format!("Bearer {TOKEN}");
    for (method, path) in [
        ("GET", "/incidents"),
        ("GET", "/incidents?limit=5"),
        ("POST", "/reset?replica=p-webapp-1"),
        ("POST", "/webhook"),
        // Not a route today: closed all the same (deny by default), so a route added later is too.
        ("GET", "/debug/state"),
        ("POST", "/"),
        ("GET", "/index.html"),
    ] {
        let u = format!("{url}{path}");
        for auth in [
            None,
            Some("Bearer wrong"),
            Some(TOKEN),
            Some("Basic ZW5kcG9pbnQ="),
            Some("bearer endpoint-auth-token-9b2e"),
        ] {
            assert_eq!(
                status(method, &u, auth).await,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {auth:?}"
            );
        }
    }
    assert_eq!(
        status("GET", &format!("{url}/incidents"), Some(&good)).await,
        StatusCode::OK
    );
    assert_eq!(
        status(
            "POST",
            &format!("{url}/reset?replica=p-webapp-1"),
            Some(&good)
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status("POST", &format!("{url}/webhook"), Some(&good)).await,
        StatusCode::OK
    );
    // The page itself: a login form, none of the data.
    let r = reqwest::get(format!("{url}/")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(body.contains("action=\"/login\""), "{body}");
    assert!(!body.contains("p-webapp-1"), "{body}");
    for path in ["/healthz", "/metrics"] {
        let r = reqwest::get(format!("{url}{path}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            !r.text().await.unwrap().contains(TOKEN),
            "{path} shows the token"
        );
    }
    let _ = stop.send(());
}

#[tokio::test]
async fn webhook_auth_none_opens_the_webhook_only() {
    let (url, stop) = start(&["--webhook-auth", "none"]).await;
    assert_eq!(
        status("POST", &format!("{url}/webhook"), None).await,
        StatusCode::OK
    );
    assert_eq!(
        status("GET", &format!("{url}/incidents"), None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status("POST", &format!("{url}/reset?replica=p-webapp-1"), None).await,
        StatusCode::UNAUTHORIZED
    );
    let _ = stop.send(());
}
