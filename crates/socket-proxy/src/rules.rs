//! The allow-list: exactly the calls the agent makes (recorded from bollard 0.21 through this
//! proxy: crates/socket-proxy/tests/agent_calls.rs), on the replicas of the healable services.
//!
//! [`decide`] takes what hyper parsed (HTTP version, method, target, headers) and returns the
//! [`Call`] to make, or why not. It never sees a body: any sign of one refuses the request.

use hyper::header::{HeaderMap, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use hyper::{Method, Uri, Version};

use crate::query::{self, ForcedFilters, Param, Rule, Values};
use crate::refusal::Refusal;
use crate::scope::Scope;

/// Docker applied a HostConfig sent in a start request's body before API 1.24; a version prefix
/// below this is refused (the proxy never forwards a body, but the rule holds on its own).
pub const MIN_API_MINOR: u32 = 24;

/// The longest stop timeout a graceful recycle may ask for: well above the webapp's drain (5 s)
/// and compose's stop_grace_period (8 s); a longer one would only keep a replica half-stopped.
pub const STOP_MAX_SECS: u32 = 60;

/// The calls the proxy knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Ping,
    Version,
    List,
    Events,
    Inspect,
    Logs,
    Stats,
    Start,
    Restart,
    Stop,
    Unpause,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Ping => "/_ping",
            Endpoint::Version => "/version",
            Endpoint::List => "/containers/json",
            Endpoint::Events => "/events",
            Endpoint::Inspect => "/containers/{name}/json",
            Endpoint::Logs => "/containers/{name}/logs",
            Endpoint::Stats => "/containers/{name}/stats",
            Endpoint::Start => "/containers/{name}/start",
            Endpoint::Restart => "/containers/{name}/restart",
            Endpoint::Stop => "/containers/{name}/stop",
            Endpoint::Unpause => "/containers/{name}/unpause",
        }
    }

    /// Writes are POSTs; everything else is read with GET (or HEAD).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Endpoint::Start | Endpoint::Restart | Endpoint::Stop | Endpoint::Unpause
        )
    }

    fn container_op(op: &str) -> Option<Endpoint> {
        Some(match op {
            "json" => Endpoint::Inspect,
            "logs" => Endpoint::Logs,
            "stats" => Endpoint::Stats,
            "start" => Endpoint::Start,
            "restart" => Endpoint::Restart,
            "stop" => Endpoint::Stop,
            "unpause" => Endpoint::Unpause,
            _ => return None,
        })
    }

    fn op(self) -> &'static str {
        match self {
            Endpoint::Inspect => "json",
            Endpoint::Logs => "logs",
            Endpoint::Stats => "stats",
            Endpoint::Start => "start",
            Endpoint::Restart => "restart",
            Endpoint::Stop => "stop",
            Endpoint::Unpause => "unpause",
            Endpoint::Ping => "_ping",
            Endpoint::Version => "version",
            Endpoint::List => "json",
            Endpoint::Events => "events",
        }
    }

    /// The query parameters each call may carry, and which agent call needs each.
    pub fn params(self) -> &'static [Param] {
        match self {
            // ping(), negotiate_version(): no parameters.
            Endpoint::Ping | Endpoint::Version => &[],
            // list(project, service): all=true, filters {label: [project, service]}; bollard
            // adds size=false.
            Endpoint::List => &[
                ("all", Rule::Bool),
                ("size", Rule::Only("false")),
                ("filters", Rule::Filters(&[("label", Values::Printable)])),
            ],
            // events(project): filters {type: [container], event: [...], label: [project]};
            // since/until bound a replay of past events.
            Endpoint::Events => &[
                ("since", Rule::Timestamp),
                ("until", Rule::Timestamp),
                ("filters", Rule::Filters(EVENT_FILTERS)),
            ],
            // inspect(): no parameters (size=true would make Docker walk the filesystem).
            Endpoint::Inspect => &[],
            // logs_tail(name, lines): follow=false, stdout, stderr, since=0, until=0,
            // timestamps=false, tail=N. No follow: an endless stream is not a tail.
            Endpoint::Logs => &[
                ("follow", Rule::Only("false")),
                ("stdout", Rule::Bool),
                ("stderr", Rule::Bool),
                ("since", Rule::Timestamp),
                ("until", Rule::Timestamp),
                ("timestamps", Rule::Bool),
                (
                    "tail",
                    Rule::Int {
                        min: 0,
                        max: 10_000,
                    },
                ),
            ],
            // inspect(with_stats): stream=false, one-shot=true.
            Endpoint::Stats => &[("stream", Rule::Bool), ("one-shot", Rule::Bool)],
            // start(name), unpause(name): no parameters (a checkpoint to restore from is a path
            // on the host).
            Endpoint::Start | Endpoint::Unpause => &[],
            // restart(name, t): the stop timeout before the kill. No signal.
            Endpoint::Restart => &[("t", Rule::Int { min: 0, max: 300 })],
            // stop(name, t): the graceful recycle of this project's replicas (issue 16: SIGTERM,
            // the webapp drains within DRAIN_TIMEOUT, Docker kills after t). Only `t`, a whole
            // number of seconds up to STOP_MAX_SECS; no signal. Bare `stop` uses the container's
            // own stop timeout (compose's stop_grace_period).
            Endpoint::Stop => &[(
                "t",
                Rule::Int {
                    min: 0,
                    max: STOP_MAX_SECS,
                },
            )],
        }
    }
}

/// The container events the agent follows (runtime/docker.rs `events`).
const EVENT_FILTERS: &[(&str, Values)] = &[
    ("type", Values::OneOf(&["container"])),
    (
        "event",
        Values::OneOf(&["die", "oom", "health_status", "stop", "pause", "kill"]),
    ),
    ("label", Values::Printable),
];

/// One allowed call, in the form the proxy will send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    /// `v1.41` when the client gave a version prefix.
    pub api: Option<String>,
    pub endpoint: Endpoint,
    /// The replica's compose name, for container calls (in scope by its form).
    pub container: Option<String>,
    /// Re-encoded, checked parameters (empty: none).
    pub query: String,
}

impl Call {
    /// The origin-form target sent to dockerd, with the container as `reference` (its id after
    /// the label check).
    pub fn target(&self, reference: Option<&str>) -> String {
        let mut t = String::new();
        if let Some(v) = &self.api {
            t.push('/');
            t.push_str(v);
        }
        match (self.endpoint, reference) {
            (Endpoint::Ping | Endpoint::Version | Endpoint::Events, _) => {
                t.push('/');
                t.push_str(self.endpoint.op());
            }
            (Endpoint::List, _) => t.push_str("/containers/json"),
            (e, Some(r)) => {
                t.push_str("/containers/");
                t.push_str(r);
                t.push('/');
                t.push_str(e.op());
            }
            (e, None) => unreachable!("{e:?} without a container"),
        }
        if !self.query.is_empty() {
            t.push('?');
            t.push_str(&self.query);
        }
        t
    }
}

/// The allow-list decision for one parsed request.
pub fn decide(
    scope: &Scope,
    version: Version,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Call, Refusal> {
    if version != Version::HTTP_11 && version != Version::HTTP_10 {
        return Err(Refusal::HttpVersion(format!("{version:?}")));
    }
    check_headers(headers)?;
    if uri.scheme().is_some() || uri.authority().is_some() || !uri.path().starts_with('/') {
        return Err(Refusal::TargetForm);
    }
    let path = uri.path();
    if path.contains('%') {
        return Err(Refusal::EncodedPath);
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
        && path != "/"
    {
        return Err(Refusal::Segments);
    }
    let (api, rest) = match segments.first() {
        Some(first)
            if first.starts_with('v') && first[1..].starts_with(|c: char| c.is_ascii_digit()) =>
        {
            (Some(api_version(first)?), &segments[1..])
        }
        _ => (None, &segments[..]),
    };
    let not_allowed = || Refusal::NotAllowed(crate::refusal::bounded(path));
    let (endpoint, container) = match rest {
        ["_ping"] => (Endpoint::Ping, None),
        ["version"] => (Endpoint::Version, None),
        ["events"] => (Endpoint::Events, None),
        ["containers", "json"] => (Endpoint::List, None),
        ["containers", name, op] => {
            let endpoint = Endpoint::container_op(op).ok_or_else(not_allowed)?;
            (endpoint, Some(*name))
        }
        _ => return Err(not_allowed()),
    };
    let method_ok = if endpoint.writes() {
        *method == Method::POST
    } else {
        *method == Method::GET || *method == Method::HEAD
    };
    if !method_ok {
        return Err(Refusal::Method {
            method: crate::refusal::bounded(method.as_str()),
            endpoint: endpoint.name(),
            allow: if endpoint.writes() {
                "POST"
            } else {
                "GET, HEAD"
            },
        });
    }
    if let Some(name) = container {
        if scope.services_of(name).is_empty() {
            return Err(Refusal::Scope(
                crate::refusal::bounded(name),
                scope.project().to_string(),
            ));
        }
    }
    let forced = match endpoint {
        Endpoint::List => Some(ForcedFilters {
            containers_only: false,
        }),
        Endpoint::Events => Some(ForcedFilters {
            containers_only: true,
        }),
        _ => None,
    };
    let query = query::parse(
        uri.query().unwrap_or(""),
        endpoint.params(),
        endpoint.name(),
        scope,
        forced.as_ref(),
    )?;
    Ok(Call {
        method: method.clone(),
        api,
        endpoint,
        container: container.map(str::to_string),
        query,
    })
}

/// No body of any framing, no protocol switch.
fn check_headers(headers: &HeaderMap) -> Result<(), Refusal> {
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err(Refusal::Body);
    }
    let lengths: Vec<_> = headers.get_all(CONTENT_LENGTH).iter().collect();
    if lengths.len() > 1 || lengths.iter().any(|v| v.as_bytes() != b"0") {
        return Err(Refusal::Body);
    }
    if headers.contains_key(UPGRADE) || headers.contains_key("http2-settings") {
        return Err(Refusal::Upgrade);
    }
    let upgrade_token = headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().map_or(true, |s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    if upgrade_token {
        return Err(Refusal::Upgrade);
    }
    Ok(())
}

/// `v1.41` -> `v1.41`; major 1 and minor from 1.24 on only, written without leading zeros.
fn api_version(segment: &str) -> Result<String, Refusal> {
    let bad = || Refusal::OldApiVersion(crate::refusal::bounded(segment));
    let (major, minor) = segment[1..].split_once('.').ok_or_else(bad)?;
    let number = |s: &str| {
        (!s.is_empty()
            && s.len() <= 3
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse::<u32>().ok())
        .flatten()
    };
    match (number(major), number(minor)) {
        (Some(1), Some(m)) if m >= MIN_API_MINOR => Ok(format!("v1.{m}")),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn scope() -> Scope {
        Scope::new("demo", &["webapp".to_string()]).unwrap()
    }

    fn call(method: &str, target: &str) -> Result<Call, Refusal> {
        call_with(method, target, &[])
    }

    fn call_with(method: &str, target: &str, headers: &[(&str, &str)]) -> Result<Call, Refusal> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        decide(
            &scope(),
            Version::HTTP_11,
            &Method::from_bytes(method.as_bytes()).unwrap(),
            &target.parse().unwrap(),
            &h,
        )
    }

    #[test]
    fn the_agents_calls_are_rebuilt() {
        let c = call("POST", "/containers/demo-webapp-2/restart?t=10").unwrap();
        assert_eq!(c.target(Some("abc")), "/containers/abc/restart?t=10");
        let c = call("POST", "/v1.41/containers/demo-webapp-2/start").unwrap();
        assert_eq!(c.target(Some("abc")), "/v1.41/containers/abc/start");
        let c = call("HEAD", "/v1.24/_ping").unwrap();
        assert_eq!(c.target(None), "/v1.24/_ping");
        let c = call("GET", "/containers/demo-webapp-1/logs?follow=false&stdout=true&stderr=true&since=0&until=0&timestamps=false&tail=50").unwrap();
        assert_eq!(
            c.target(Some("i")),
            "/containers/i/logs?follow=false&stdout=true&stderr=true&since=0&until=0&timestamps=false&tail=50"
        );
        let c = call("GET", "/events").unwrap();
        assert_eq!(
            c.target(None),
            format!(
                "/events?filters={}",
                query::encode(
                    r#"{"label":["com.docker.compose.project=demo"],"type":["container"]}"#
                )
            )
        );
    }

    #[test]
    fn everything_else_is_refused() {
        let refused = |m: &str, t: &str| call(m, t).unwrap_err();
        assert_eq!(refused("GET", "/info").kind(), "not_allowed");
        assert_eq!(refused("POST", "/containers/create").kind(), "not_allowed");
        assert_eq!(
            refused("POST", "/containers/demo-webapp-1/exec").kind(),
            "not_allowed"
        );
        assert_eq!(
            refused("POST", "/containers/demo-webapp-1/kill").kind(),
            "not_allowed"
        );
        assert_eq!(
            refused("DELETE", "/containers/demo-webapp-1").kind(),
            "not_allowed"
        );
        assert_eq!(
            refused("GET", "/containers/demo-webapp-1/archive").kind(),
            "not_allowed"
        );
        assert_eq!(
            refused("PUT", "/containers/demo-webapp-1/start").kind(),
            "method"
        );
        assert_eq!(
            refused("GET", "/containers/demo-webapp-1/start").kind(),
            "method"
        );
        assert_eq!(refused("POST", "/containers/json").kind(), "method");
        assert_eq!(
            refused("post", "/containers/demo-webapp-1/start").kind(),
            "method"
        );
        assert_eq!(
            refused("POST", "/v1.23/containers/demo-webapp-1/start").kind(),
            "old_api_version"
        );
        assert_eq!(refused("GET", "/v1.041/_ping").kind(), "old_api_version");
        assert_eq!(refused("GET", "/v2.0/_ping").kind(), "old_api_version");
        assert_eq!(refused("GET", "/v1/_ping").kind(), "old_api_version");
        assert_eq!(
            refused("POST", "/containers/demo-webapp-1/start?checkpoint=x").kind(),
            "param"
        );
        assert_eq!(
            refused("POST", "/containers/demo-webapp-1/restart?signal=KILL").kind(),
            "param"
        );
        assert_eq!(
            refused("GET", "/containers/demo-webapp-1/logs?follow=true").kind(),
            "value"
        );
        assert_eq!(
            refused("GET", "/containers/demo-webapp-1/json?size=true").kind(),
            "param"
        );
        assert_eq!(
            refused("GET", "/containers/other-webapp-1/json").kind(),
            "scope"
        );
        assert_eq!(
            refused("POST", "/containers/demo-db-1/start").kind(),
            "scope"
        );
        assert_eq!(
            refused("POST", &format!("/containers/{}/start", "a".repeat(64))).kind(),
            "scope"
        );
        assert_eq!(
            refused("GET", "/containers/demo-webapp-1/../../info").kind(),
            "segments"
        );
        assert_eq!(refused("GET", "/containers//json").kind(), "segments");
        assert_eq!(refused("GET", "//_ping").kind(), "segments");
        assert_eq!(refused("GET", "/_ping/").kind(), "segments");
        assert_eq!(
            refused("GET", "/containers/demo-webapp-1%2Fjson").kind(),
            "encoded_path"
        );
        assert_eq!(refused("GET", "/%5Fping").kind(), "encoded_path");
        assert_eq!(refused("GET", "http://docker/_ping").kind(), "target_form");
        assert_eq!(refused("GET", "/").kind(), "not_allowed");
    }

    #[test]
    fn bodies_and_upgrades_are_refused_before_anything_else() {
        let start = "/containers/demo-webapp-1/start";
        assert!(call_with("POST", start, &[("content-length", "0")]).is_ok());
        for h in [
            [("content-length", "24")],
            [("transfer-encoding", "chunked")],
            [("transfer-encoding", "identity")],
            [("content-length", "00")],
            [("upgrade", "h2c")],
            [("connection", "keep-alive, Upgrade")],
            [("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA")],
        ] {
            assert!(call_with("POST", start, &h).is_err(), "{h:?}");
            assert!(call_with("GET", "/info", &h).is_err(), "{h:?}");
        }
        assert_eq!(
            call_with(
                "POST",
                start,
                &[("content-length", "0"), ("content-length", "0")]
            )
            .unwrap_err(),
            Refusal::Body
        );
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        for v in [Version::HTTP_2, Version::HTTP_09, Version::HTTP_3] {
            let r = decide(&scope(), v, &Method::GET, &"/_ping".parse().unwrap(), &h);
            assert_eq!(r.unwrap_err().kind(), "http_version");
        }
    }
}
