//! Spawning a fake on a listener and recording what it was sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One request the fake received and what it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: Option<String>,
    /// The credential the client sent (`x-goog-api-key`, or the Bearer token).
    pub api_key: Option<String>,
    /// The request body (`Value::Null` if it was not JSON).
    pub body: Value,
    pub status: u16,
    pub response: Value,
}

#[derive(Default, Clone)]
pub(crate) struct Log(Arc<Mutex<Vec<Recorded>>>);

impl Log {
    pub(crate) fn push(&self, r: Recorded) {
        self.0.lock().expect("log lock").push(r);
    }
    pub(crate) fn all(&self) -> Vec<Recorded> {
        self.0.lock().expect("log lock").clone()
    }
}

/// A server running in a task; stopped when dropped.
pub(crate) struct Running {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    pub(crate) async fn loopback(router: Router) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Running {
            addr,
            shutdown: Some(tx),
            task,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// What the fake answers: the protocol's JSON, or raw bytes (a scripted [`Reply::Raw`]).
pub(crate) enum Payload {
    Json(Value),
    Raw { content_type: String, body: String },
}

impl Payload {
    pub(crate) fn recorded(&self) -> Value {
        match self {
            Payload::Json(v) => v.clone(),
            Payload::Raw { body, .. } => Value::String(body.clone()),
        }
    }

    pub(crate) fn into_response(self, status: StatusCode) -> Response {
        match self {
            Payload::Json(v) => (status, Json(v)).into_response(),
            Payload::Raw { content_type, body } => {
                (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
            }
        }
    }
}
