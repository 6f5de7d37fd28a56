//! The listener: hyper's HTTP/1 server (HTTP/1.0 and 1.1; an HTTP/2 preface does not parse),
//! keep-alive off so each connection carries one request and pipelined bytes are never read as a
//! second one, bounded heads, a bounded number of connections. Every request gets one access-log
//! line: who, what they asked, what was sent to dockerd (or why nothing was), and the status.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::refusal::{bounded, Refusal};
use crate::rules::{self, Endpoint};
use crate::scope::Scope;
use crate::upstream::{Body, Upstream};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 128;
/// A request head must arrive within this time and fit in this many bytes (hyper's minimum
/// buffer; the agent's longest request head is about 400 bytes).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 8 * 1024;
/// Longest wait for dockerd's answer: a restart or stop waits up to `t` (at most 300 s) first.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(360);
/// What is read of a refused request's body before the answer (see [`drain`]).
const DRAIN_MAX: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// dockerd's response headers passed back; the rest (hop-by-hop, framing) is hyper's business.
const PASSED_HEADERS: &[&str] = &[
    "content-type",
    "api-version",
    "ostype",
    "docker-experimental",
];

pub struct Proxy {
    scope: Scope,
    upstream: Upstream,
}

impl Proxy {
    pub fn new(scope: Scope, upstream: Upstream) -> Self {
        Proxy { scope, upstream }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Answers one request and logs it.
    pub async fn handle(&self, client: SocketAddr, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let target = req.uri().to_string();
        let answered = self.answer(&req).await;
        let (mut resp, sent) = match answered {
            Ok(done) => done,
            Err(refusal) => {
                let resp = refusal.response();
                let status = resp.status().as_u16();
                let (method, target) = (bounded(method.as_str()), bounded(&target));
                let ms = started.elapsed().as_millis() as u64;
                match refusal {
                    // Not refusals: the answer to an allowed call.
                    Refusal::NoSuchContainer(_) => tracing::info!(
                        %client, %method, ?target, status, ms, "not found"
                    ),
                    Refusal::Upstream(_) => tracing::warn!(
                        %client, %method, ?target, status, reason = %refusal, ms, "upstream failed"
                    ),
                    _ => tracing::info!(
                        %client, %method, ?target, status, refused = refusal.kind(),
                        reason = %refusal, ms, "refused"
                    ),
                }
                drain(req).await;
                return resp;
            }
        };
        resp.headers_mut()
            .insert(SERVER, HeaderValue::from_static("healstack-socket-proxy"));
        tracing::info!(
            %client, method = %method, target = ?bounded(&target), status = resp.status().as_u16(),
            upstream = ?sent, ms = started.elapsed().as_millis() as u64, "forwarded"
        );
        resp
    }

    /// The response, and the request line sent to dockerd.
    async fn answer(&self, req: &Request<Incoming>) -> Result<(Response<Body>, String), Refusal> {
        let call = rules::decide(
            &self.scope,
            req.version(),
            req.method(),
            req.uri(),
            req.headers(),
        )?;
        let reference = match &call.container {
            None => None,
            Some(name) => {
                let services = self.scope.services_of(name);
                let inspected = self
                    .upstream
                    .inspect_in_scope(call.api.as_deref(), name, &self.scope, &services)
                    .await?;
                if call.endpoint == Endpoint::Inspect {
                    // The label check's own inspect is the answer (without Config.Env).
                    let mut resp = Response::new(
                        Full::new(inspected.body)
                            .map_err(|never| match never {})
                            .boxed(),
                    );
                    resp.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    return Ok((resp, format!("GET {}", call.target(Some(&inspected.id)))));
                }
                Some(inspected.id)
            }
        };
        let target = call.target(reference.as_deref());
        let timeout = if call.endpoint.writes() {
            WRITE_TIMEOUT
        } else {
            READ_TIMEOUT
        };
        let upstream = self.upstream.send(&call.method, &target, timeout).await?;
        let (parts, body) = upstream.into_parts();
        let mut resp = Response::new(body.map_err(|e| Box::new(e) as _).boxed());
        *resp.status_mut() = parts.status;
        for name in PASSED_HEADERS {
            if let Some(v) = parts.headers.get(*name) {
                resp.headers_mut().insert(*name, v.clone());
            }
        }
        Ok((resp, format!("{} {target}", call.method)))
    }
}

/// Reads and drops what the client still sends of a refused request's body (at most
/// [`DRAIN_MAX`] bytes, for at most [`DRAIN_TIME`]) before the answer goes out. The connection
/// closes after the answer: closed with a body still arriving, the client's next write is reset
/// and it may never read the refusal (a shell client dies of SIGPIPE). A client waiting for
/// `100 Continue` sends nothing more: it gets the answer at once.
async fn drain(req: Request<Incoming>) {
    if req.headers().contains_key(hyper::header::EXPECT) {
        return;
    }
    let mut body = req.into_body();
    let mut left = DRAIN_MAX;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

/// Serves until `shutdown` completes.
pub async fn run(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
        };
        let (stream, client) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: say so, breathe, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(client, req).await) }
            });
            let served = http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(MAX_HEAD)
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            match served {
                // Unparsable or late heads (an HTTP/2 preface, garbage, a slow client) end here:
                // hyper answered 400/431 where HTTP/1 allows an answer; nothing went upstream.
                Err(e) if e.is_parse() || e.is_parse_too_large() || e.is_timeout() => {
                    tracing::info!(%client, refused = "unparsable", reason = %e, "refused");
                }
                // The client went away (it stopped reading an event stream, say).
                Err(e) => tracing::debug!(%client, error = %e, "connection ended"),
                Ok(()) => {}
            }
        });
    }
}
