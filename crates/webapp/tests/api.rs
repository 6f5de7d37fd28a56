//! The real app on port 0: routes, leak accounting, metrics labels, shutdown, healthcheck.

mod helpers;

use std::time::Duration;

use helpers::spawn_app;
use webapp::healthcheck;

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn index_names_the_replica_and_leaks_exactly_n_bytes_per_request() {
    let app = spawn_app(MIB).await;
    assert_eq!(app.metric("webapp_leaked_bytes", &[]).await, Some(0.0));

    for i in 1..=5 {
        let response = app.get("/").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-served-by"], "test-replica");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("Hello from test-replica"));
        let leaked = app.metric("webapp_leaked_bytes", &[]).await;
        assert_eq!(leaked, Some((i * MIB) as f64));
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn leaking_zero_bytes_works() {
    let app = spawn_app(0).await;
    for _ in 0..3 {
        assert_eq!(app.get("/").await.status(), 200);
    }
    assert_eq!(app.metric("webapp_leaked_bytes", &[]).await, Some(0.0));
    let served = app
        .metric("http_requests_total", &[("route", "/"), ("status", "200")])
        .await;
    assert_eq!(served, Some(3.0));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_answers_200_and_does_not_leak() {
    let app = spawn_app(MIB).await;
    for _ in 0..10 {
        let response = app.get("/health").await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(app.metric("webapp_leaked_bytes", &[]).await, Some(0.0));
    let health = app
        .metric(
            "http_requests_total",
            &[("route", "/health"), ("status", "200")],
        )
        .await;
    assert_eq!(health, Some(10.0));
    let timed = app
        .metric(
            "http_request_duration_seconds_count",
            &[("route", "/health")],
        )
        .await;
    assert_eq!(timed, Some(10.0));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_paths_are_404_and_counted_as_other_never_by_raw_path() {
    let app = spawn_app(MIB).await;
    for path in ["/nope", "/admin/secret", "/health/extra"] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }
    let text = app.scrape().await;
    let other = helpers::metric_value(
        &text,
        "http_requests_total",
        &[("route", "other"), ("status", "404")],
    );
    assert_eq!(other, Some(3.0));
    assert!(
        !text.contains("/nope") && !text.contains("secret"),
        "{text}"
    );
    assert_eq!(
        helpers::metric_value(&text, "webapp_leaked_bytes", &[]),
        Some(0.0)
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_include_memory_limit_and_process_collector() {
    let app = spawn_app(MIB).await;
    let text = app.scrape().await;
    let limit = helpers::metric_value(&text, "webapp_memory_limit_bytes", &[]);
    assert!(limit.is_some_and(|l| l >= 0.0), "{text}");
    let rss = helpers::metric_value(&text, "process_resident_memory_bytes", &[]);
    assert!(rss.is_some_and(|rss| rss > 0.0), "{text}");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_apps_in_one_process_keep_separate_metrics() {
    let (a, b) = (spawn_app(MIB).await, spawn_app(MIB).await);
    a.get("/").await;
    assert_eq!(a.metric("webapp_leaked_bytes", &[]).await, Some(MIB as f64));
    assert_eq!(b.metric("webapp_leaked_bytes", &[]).await, Some(0.0));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_both_listeners() {
    let app = spawn_app(0).await;
    let (addr, metrics_addr) = (app.addr, app.metrics_addr);
    tokio::time::timeout(Duration::from_secs(5), app.shutdown())
        .await
        .expect("graceful shutdown finishes")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(tokio::net::TcpStream::connect(metrics_addr).await.is_err());
}

#[tokio::test]
async fn healthcheck_passes_against_a_running_app() {
    let app = spawn_app(MIB).await;
    healthcheck::check(app.addr, healthcheck::DEFAULT_TIMEOUT)
        .await
        .unwrap();
    // The probe is a request like any other, and must not leak.
    assert_eq!(app.metric("webapp_leaked_bytes", &[]).await, Some(0.0));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn healthcheck_fails_against_a_closed_port() {
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let err = healthcheck::check(addr, healthcheck::DEFAULT_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, healthcheck::HealthcheckError::Connect { .. }),
        "{err}"
    );
}

/// The `RESPONSE_DELAY` test knob slows every answer, a 405 for a POST too (scripts/check-drain
/// needs POSTs in flight), but never the healthcheck.
#[tokio::test]
async fn response_delay_slows_every_answer_but_health() {
    let delay = Duration::from_millis(300);
    let app = helpers::spawn_with(webapp::Config {
        response_delay: delay,
        ..helpers::test_config()
    })
    .await;
    for (method, path, status) in [("GET", "/", 200), ("POST", "/", 405), ("GET", "/nope", 404)] {
        let started = std::time::Instant::now();
        let response = app
            .client
            .request(
                method.parse().unwrap(),
                format!("http://{}{path}", app.addr),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
        let took = started.elapsed();
        assert!(took >= delay, "{method} {path}: {took:?}");
    }
    let started = std::time::Instant::now();
    assert_eq!(app.get("/health").await.status(), 200);
    let took = started.elapsed();
    assert!(took < delay, "/health: {took:?}");
    app.shutdown().await.unwrap();
}
