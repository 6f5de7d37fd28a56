//! dockerd over its Unix socket: one fresh connection per request, a request built by the proxy
//! (method, target, two fixed headers, no body), and the label check that resolves a replica's
//! name to its id.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::refusal::Refusal;
use crate::scope::{Scope, PROJECT_LABEL, SERVICE_LABEL};

/// Every response body the proxy hands back.
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Longest an inspect answer may be (a container's inspect is a few KiB).
const MAX_INSPECT: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct Upstream {
    socket: PathBuf,
}

/// A container as the proxy's own inspect saw it.
pub struct Inspected {
    pub id: String,
    /// The inspect answer with `Config.Env` removed, for an inspect call of the agent.
    pub body: Bytes,
}

impl Upstream {
    pub fn new(socket: PathBuf) -> Self {
        Upstream { socket }
    }

    /// Sends `method target` to dockerd; waits at most `head_timeout` for the response head (the
    /// body, e.g. the event stream, may then last as long as the client reads it).
    pub async fn send(
        &self,
        method: &Method,
        target: &str,
        head_timeout: Duration,
    ) -> Result<Response<Incoming>, Refusal> {
        let unreachable = |e: &dyn std::fmt::Display| {
            Refusal::Upstream(format!("{}: {e}", self.socket.display()))
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            // Ends when the response body is read to its end or dropped.
            let _ = conn.await;
        });
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.method_mut() = method.clone();
        *req.uri_mut() = target
            .parse()
            .map_err(|e| Refusal::Upstream(format!("built an invalid target {target:?}: {e}")))?;
        // dockerd (Go's net/http) wants a Host header on HTTP/1.1; the value is not used.
        req.headers_mut()
            .insert(HOST, HeaderValue::from_static("docker"));
        req.headers_mut().insert(
            USER_AGENT,
            HeaderValue::from_static(concat!(
                "healstack-socket-proxy/",
                env!("CARGO_PKG_VERSION")
            )),
        );
        tokio::time::timeout(head_timeout, sender.send_request(req))
            .await
            .map_err(|_| Refusal::Upstream(format!("no answer within {head_timeout:?}")))?
            .map_err(|e| unreachable(&e))
    }

    /// The label check: inspects `name` and accepts it only when its compose labels name the
    /// scope's project and one of `services` (the services its name can be a replica of). Ids
    /// are immutable, so forwarding by the id returned here closes the gap between the check and
    /// the call (a rename in between cannot redirect it).
    pub async fn inspect_in_scope(
        &self,
        api: Option<&str>,
        name: &str,
        scope: &Scope,
        services: &[&str],
    ) -> Result<Inspected, Refusal> {
        let target = match api {
            Some(v) => format!("/{v}/containers/{name}/json"),
            None => format!("/containers/{name}/json"),
        };
        let resp = self
            .send(&Method::GET, &target, Duration::from_secs(30))
            .await?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_INSPECT)
            .collect()
            .await
            .map_err(|e| Refusal::Upstream(format!("reading an inspect answer: {e}")))?
            .to_bytes();
        if status == StatusCode::NOT_FOUND {
            return Err(Refusal::NoSuchContainer(name.to_string()));
        }
        if !status.is_success() {
            return Err(Refusal::Upstream(format!(
                "inspect of {name} answered {status}: {}",
                crate::refusal::bounded(&String::from_utf8_lossy(&bytes))
            )));
        }
        let mut info: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Refusal::Upstream(format!("inspect of {name} is not JSON: {e}")))?;
        let id = info["Id"].as_str().unwrap_or_default().to_string();
        let labels = &info["Config"]["Labels"];
        let in_scope = id.len() == 64
            && id.bytes().all(|b| b.is_ascii_hexdigit())
            && info["Name"].as_str() == Some(&format!("/{name}"))
            && labels[PROJECT_LABEL].as_str() == Some(scope.project())
            && labels[SERVICE_LABEL]
                .as_str()
                .is_some_and(|s| services.contains(&s));
        if !in_scope {
            return Err(Refusal::Labels(
                name.to_string(),
                scope.project().to_string(),
            ));
        }
        // The replicas' environment may hold their secrets; the agent never reads it.
        if let Some(config) = info.get_mut("Config").and_then(|c| c.as_object_mut()) {
            config.remove("Env");
        }
        Ok(Inspected {
            id,
            body: Bytes::from(serde_json::to_vec(&info).expect("a JSON value serializes")),
        })
    }
}
