//! Why the proxy did not forward a request, answered the way Docker answers errors
//! (`{"message": "..."}`, which every Docker client shows), with a status saying whose fault it is.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::upstream::Body;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} is not spoken here: HTTP/1.0 or HTTP/1.1 only")]
    HttpVersion(String),
    #[error("a request with a body (Content-Length other than 0, or Transfer-Encoding) is refused: no call of the agent has one")]
    Body,
    #[error("protocol upgrades (Upgrade, Connection: upgrade) are refused")]
    Upgrade,
    #[error("only origin-form targets (/path?query) are accepted")]
    TargetForm,
    #[error("percent-encoded paths are refused")]
    EncodedPath,
    #[error("empty (//) and dot (., ..) path segments are refused")]
    Segments,
    #[error("API version {0} is refused: 1.24 or newer only (older versions applied a HostConfig sent with start)")]
    OldApiVersion(String),
    #[error("{0:?} is not on the allow-list of the healstack socket proxy")]
    NotAllowed(String),
    #[error("method {method} is not allowed on {endpoint} (allowed: {allow})")]
    Method {
        method: String,
        endpoint: &'static str,
        allow: &'static str,
    },
    #[error("query parameter {name:?} is not allowed on {endpoint}")]
    Param {
        name: String,
        endpoint: &'static str,
    },
    #[error("query parameter {name}: {why}")]
    Value { name: &'static str, why: String },
    #[error("container {0:?} is out of scope: only <project>-<service>-<n>, for the healable services of project {1}")]
    Scope(String, String),
    #[error("container {0:?} is not a replica of a healable service of project {1} (its compose labels say otherwise)")]
    Labels(String, String),
    /// Not a refusal of the request, but the answer to it: the container does not exist.
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("the Docker daemon did not answer: {0}")]
    Upstream(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::HttpVersion(_) => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Refusal::Body
            | Refusal::TargetForm
            | Refusal::EncodedPath
            | Refusal::Segments
            | Refusal::Value { .. } => StatusCode::BAD_REQUEST,
            Refusal::Method { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Upgrade
            | Refusal::OldApiVersion(_)
            | Refusal::NotAllowed(_)
            | Refusal::Param { .. }
            | Refusal::Scope(..)
            | Refusal::Labels(..) => StatusCode::FORBIDDEN,
            Refusal::NoSuchContainer(_) => StatusCode::NOT_FOUND,
            Refusal::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// A short, fixed word for the access log and for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::HttpVersion(_) => "http_version",
            Refusal::Body => "body",
            Refusal::Upgrade => "upgrade",
            Refusal::TargetForm => "target_form",
            Refusal::EncodedPath => "encoded_path",
            Refusal::Segments => "segments",
            Refusal::OldApiVersion(_) => "old_api_version",
            Refusal::NotAllowed(_) => "not_allowed",
            Refusal::Method { .. } => "method",
            Refusal::Param { .. } => "param",
            Refusal::Value { .. } => "value",
            Refusal::Scope(..) => "scope",
            Refusal::Labels(..) => "labels",
            Refusal::NoSuchContainer(_) => "no_such_container",
            Refusal::Upstream(_) => "upstream",
        }
    }

    pub fn response(&self) -> Response<Body> {
        let body = serde_json::json!({ "message": bounded(&self.to_string()) }).to_string();
        let mut resp = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        );
        *resp.status_mut() = self.status();
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Refusal::Method { allow, .. } = self {
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}

/// Refusals quote what the client sent: keep the answer (and the log) small.
pub fn bounded(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
