//! Alone in its own test binary (= its own process), so no other test frees or
//! allocates memory while RSS is measured.

mod helpers;

use helpers::{rss_bytes, spawn_app};

const MIB: usize = 1024 * 1024;
const REQUESTS: usize = 50;

#[tokio::test]
async fn every_request_really_grows_resident_memory() {
    let app = spawn_app(MIB).await;
    // Warm up the client, the connection pool and the allocator's arenas.
    assert_eq!(app.get("/health").await.status(), 200);

    let before = rss_bytes();
    let collector_before = app
        .metric("process_resident_memory_bytes", &[])
        .await
        .unwrap();
    for _ in 0..REQUESTS {
        assert_eq!(app.get("/").await.status(), 200);
    }
    let grown = rss_bytes().saturating_sub(before);
    let collector_grown = app
        .metric("process_resident_memory_bytes", &[])
        .await
        .unwrap()
        - collector_before;

    let want = (REQUESTS * MIB) as f64 * 0.8;
    assert!(
        grown as f64 >= want,
        "RSS grew {grown} bytes, want >= {want}"
    );
    assert!(
        collector_grown >= want,
        "process_resident_memory_bytes grew {collector_grown}, want >= {want}"
    );
    assert_eq!(
        app.metric("webapp_leaked_bytes", &[]).await,
        Some((REQUESTS * MIB) as f64)
    );
    app.shutdown().await.unwrap();
}
