//! The drain after SIGTERM, seen from the client side as nginx sees it: raw HTTP/1.1 over TCP
//! against the real app on port 0. `scripts/check-drain` proves the same behind real nginx.

mod helpers;

use std::future::ready;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use helpers::{spawn_with, test_config, TestApp};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webapp::app::{self, AppState};
use webapp::leak::Leak;
use webapp::metrics::Metrics;
use webapp::serve::serve;
use webapp::Config;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: webapp\r\n\r\n";
/// Long enough for the server to have acted on what it was just told (accept, shut down).
const SETTLE: Duration = Duration::from_millis(200);
const PATIENCE: Duration = Duration::from_secs(5);

async fn draining_for(drain_timeout: Duration) -> TestApp {
    spawn_with(Config {
        drain_timeout,
        ..test_config()
    })
    .await
}

/// Everything the server sends until it closes the connection ("" if it closes at once).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut bytes))
        .await
        .expect("the server closes the connection in time")
        .unwrap_or_else(|e| panic!("connection reset after {bytes:?}: {e}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A whole `GET /` answer (read until the server closed the connection).
fn assert_answered(response: &str) {
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response:?}");
    assert!(response.ends_with("</html>\n"), "{response:?}");
}

/// Answered, and told the client the connection ends (a request read after the stop).
fn assert_answered_and_closed(response: &str) {
    assert_answered(response);
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response:?}"
    );
}

/// nginx connects, then writes its request: a stop landing in between must not lose it.
#[tokio::test]
async fn a_connection_accepted_before_the_stop_gets_its_request_answered() {
    let mut app = draining_for(PATIENCE).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    tokio::time::sleep(SETTLE).await;
    app.begin_shutdown();
    tokio::time::sleep(SETTLE).await;

    stream.write_all(REQUEST).await.unwrap();
    assert_answered(&read_until_closed(&mut stream).await);
    tokio::time::timeout(PATIENCE, app.stopped())
        .await
        .expect("stops once the request is answered")
        .unwrap();
}

/// Connections the kernel completed but the app had not accepted yet when the stop came are
/// served, not reset: nginx has already sent its request on them.
#[tokio::test]
async fn requests_waiting_in_the_accept_queue_are_answered() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(REQUEST).await.unwrap();
        queued.push(stream);
    }
    let router = app::router(AppState {
        instance: "test-replica".into(),
        leak: Arc::new(Leak::new(0)),
        metrics: Metrics::new().unwrap(),
        response_delay: Duration::ZERO,
    });
    // Stopped before it ever accepted: everything is still in the listener's queue.
    let server = tokio::spawn(serve(listener, router, ready(()), PATIENCE));
    for mut stream in queued {
        assert_answered(&read_until_closed(&mut stream).await);
    }
    let drained = server.await.unwrap().unwrap();
    assert_eq!((drained.open, drained.cut), (5, 0), "{drained:?}");
}

/// A request being handled when the stop comes (here a slow one: `RESPONSE_DELAY`) is
/// finished and answered before the process ends, and `/health` is not slowed down.
#[tokio::test]
async fn a_request_in_its_handler_at_the_stop_is_finished() {
    let delay = Duration::from_millis(600);
    let mut app = spawn_with(Config {
        response_delay: delay,
        ..test_config()
    })
    .await;
    let health = Instant::now();
    assert_eq!(app.get("/health").await.status(), 200);
    assert!(health.elapsed() < delay, "{:?}", health.elapsed());
    let url = format!("http://{}/", app.addr);
    let asked = Instant::now();
    let in_flight = tokio::spawn(async move { reqwest::get(url).await?.text().await });
    tokio::time::sleep(SETTLE).await;
    app.begin_shutdown();

    let body = in_flight.await.unwrap().expect("answered");
    assert!(body.contains("Hello from test-replica"), "{body}");
    assert!(asked.elapsed() >= delay, "{:?}", asked.elapsed());
    tokio::time::timeout(PATIENCE, app.stopped())
        .await
        .expect("stops once the request is answered")
        .unwrap();
}

/// Draining: new connections are refused at once (nginx then tries another replica before
/// sending anything), while a request already in progress is finished.
#[tokio::test]
async fn new_connections_are_refused_while_a_request_in_flight_finishes() {
    let mut app = draining_for(PATIENCE).await;
    let mut in_flight = TcpStream::connect(app.addr).await.unwrap();
    in_flight.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(SETTLE).await;
    app.begin_shutdown();
    tokio::time::sleep(SETTLE).await;

    let refused = TcpStream::connect(app.addr).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    in_flight.write_all(b"Host: webapp\r\n\r\n").await.unwrap();
    assert_answered_and_closed(&read_until_closed(&mut in_flight).await);
    tokio::time::timeout(PATIENCE, app.stopped())
        .await
        .expect("stops once the request is answered")
        .unwrap();
}

/// An idle keep-alive connection (what nginx keeps with `keepalive` in an upstream) is closed at
/// once, and does not hold the drain until its timeout.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed_at_once() {
    let drain_timeout = Duration::from_secs(30);
    let mut app = draining_for(drain_timeout).await;
    let mut idle = keep_alive_after_one_request(app.addr).await;

    let asked = Instant::now();
    app.begin_shutdown();
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(PATIENCE, idle.read(&mut rest))
        .await
        .expect("the idle connection is closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&rest[..n]));
    tokio::time::timeout(PATIENCE, app.stopped())
        .await
        .expect("an idle connection does not hold the drain")
        .unwrap();
    assert!(asked.elapsed() < drain_timeout);
}

/// A request that never completes is cut when the drain timeout passes, so the process exits
/// before Docker's stop timeout would kill it.
#[tokio::test]
async fn the_drain_timeout_bounds_a_request_that_never_finishes() {
    let drain_timeout = Duration::from_millis(300);
    let mut app = draining_for(drain_timeout).await;
    let mut stuck = TcpStream::connect(app.addr).await.unwrap();
    stuck.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(SETTLE).await;

    let asked = Instant::now();
    app.begin_shutdown();
    tokio::time::timeout(PATIENCE, app.stopped())
        .await
        .expect("the drain timeout ends the drain")
        .unwrap();
    assert!(asked.elapsed() >= drain_timeout, "{:?}", asked.elapsed());
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stuck.read_to_end(&mut rest))
        .await
        .expect("the cut connection is closed");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

/// One `GET /` answered on a keep-alive connection, which is then left idle.
async fn keep_alive_after_one_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(REQUEST).await.unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&response).contains("</html>\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("answered")
            .unwrap();
        assert!(n > 0, "closed after {response:?}");
        response.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text:?}");
    assert!(!text.to_ascii_lowercase().contains("connection: close"));
    stream
}
