//! Conformance of the Docker API proxy, judged from dockerd's side: the proxy in front of a
//! recording stand-in for dockerd, crafted requests sent as raw bytes, and a judge
//! (support/oracle.rs) of every byte that reached the stand-in. It does not trust the proxy's
//! answers: a request "refused" with a 403 after its body went upstream fails here.
//!
//! Runs against this crate's proxy in-process, or any other proxy through `PROXY_CMD` (see
//! support/mod.rs), e.g. the HAProxy configuration this crate replaced.

mod support;

use proptest::prelude::*;
use support::oracle::{judge, show};
use support::recorder::id_of;
use support::wire::{self, chunked, get, h2, http1, post};
use support::{status_of, Harness};

const BINDS: &[u8] = br#"{"Binds":["/:/host:ro"]}"#;
const PRIVILEGED: &[u8] = br#"{"Privileged":true}"#;

/// What must become of a request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// One of the agent's calls: it must reach dockerd, as this call.
    Reaches(&'static str),
    /// Nothing may reach dockerd but the proxy's own label check (an inspect by name).
    Refused,
}
use Expect::{Reaches, Refused};

#[derive(Clone)]
struct Case {
    name: String,
    bytes: Vec<u8>,
    expect: Expect,
}

fn case(name: impl Into<String>, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        bytes,
        expect,
    }
}

fn enc(s: &str) -> String {
    socket_proxy::query::encode(s)
}

/// bollard 0.21's requests, as recorded through the proxy (tests/agent_calls.rs).
fn agent_calls() -> Vec<Case> {
    let list_filters =
        enc(r#"{"label":["com.docker.compose.project=hs","com.docker.compose.service=webapp"]}"#);
    let event_filters = enc(
        r#"{"event":["die","oom","health_status","stop","pause","kill"],"type":["container"],"label":["com.docker.compose.project=hs"]}"#,
    );
    vec![
        case("agent: ping", get("/_ping"), Reaches("ping")),
        case("agent: HEAD ping", http1("HEAD", "/_ping", "HTTP/1.1", &[], b""), Reaches("ping")),
        case("agent: version", get("/version"), Reaches("version")),
        case(
            "agent: list",
            get(&format!("/containers/json?all=true&size=false&filters={list_filters}")),
            Reaches("list"),
        ),
        case("agent: inspect", get("/containers/hs-webapp-1/json"), Reaches("json")),
        case(
            "agent: stats",
            get("/containers/hs-webapp-1/stats?stream=false&one-shot=true"),
            Reaches("stats"),
        ),
        case(
            "agent: logs tail",
            get("/containers/hs-webapp-1/logs?follow=false&stdout=true&stderr=true&since=0&until=0&timestamps=false&tail=50"),
            Reaches("logs"),
        ),
        case("agent: start", post("/containers/hs-webapp-2/start"), Reaches("start")),
        case("agent: restart", post("/containers/hs-webapp-1/restart?t=10"), Reaches("restart")),
        case("agent: stop (graceful recycle)", post("/containers/hs-webapp-1/stop?t=5"), Reaches("stop")),
        case("stop t=60 (the longest)", post("/containers/hs-webapp-1/stop?t=60"), Reaches("stop")),
        case("stop without t", post("/containers/hs-webapp-1/stop"), Reaches("stop")),
        case("agent: unpause", post("/containers/hs-webapp-1/unpause"), Reaches("unpause")),
        case("agent: events", get(&format!("/events?filters={event_filters}")), Reaches("events")),
        case("agent: write probe (replica 0)", post("/containers/hs-webapp-0/start"), Refused),
        case("HTTP/1.0", http1("GET", "/_ping", "HTTP/1.0", &[], b""), Reaches("ping")),
        case("version prefix v1.41", post("/v1.41/containers/hs-webapp-1/restart?t=1"), Reaches("restart")),
        case("version prefix v1.24", get("/v1.24/containers/hs-webapp-1/json"), Reaches("json")),
        case(
            "start with Content-Length: 0",
            http1("POST", "/containers/hs-webapp-2/start", "HTTP/1.1", &["Content-Length: 0"], b""),
            Reaches("start"),
        ),
        // The scope is the proxy's, whatever the client's filters say.
        case(
            "list asking for another project",
            get(&format!("/containers/json?all=1&filters={}", enc(r#"{"label":["com.docker.compose.project=other"]}"#))),
            Reaches("list"),
        ),
        case("list without filters", get("/containers/json?all=1"), Reaches("list")),
        case("events without filters", get("/events?since=0&until=1"), Reaches("events")),
    ]
}

/// Bodies in every framing, on the write Docker once read a HostConfig from.
fn bodies() -> Vec<Case> {
    let start_old = "/v1.23/containers/hs-webapp-2/start";
    let start = "/v1.41/containers/hs-webapp-2/start";
    let json = "Content-Type: application/json";
    vec![
        case(
            "h2 prior knowledge: start v1.23 + DATA Binds (the issue's attack)",
            h2("POST", start_old, Some(BINDS)),
            Refused,
        ),
        case(
            "h2 prior knowledge: start v1.41 + DATA Privileged",
            h2("POST", start, Some(PRIVILEGED)),
            Refused,
        ),
        case(
            "h2 prior knowledge: start, no body",
            h2("POST", "/containers/hs-webapp-2/start", None),
            Refused,
        ),
        case(
            "h2 prior knowledge: GET /info",
            h2("GET", "/info", None),
            Refused,
        ),
        case(
            "h2 prior knowledge: two streams (ping, then start + body)",
            {
                let mut b = h2("GET", "/_ping", None);
                b.extend(wire::h2_stream("POST", start_old, Some(BINDS), 3));
                b
            },
            Refused,
        ),
        case(
            "h2c upgrade: start + body",
            http1(
                "POST",
                start_old,
                "HTTP/1.1",
                &[
                    "Connection: Upgrade, HTTP2-Settings",
                    "Upgrade: h2c",
                    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
                    json,
                    "Content-Length: 24",
                ],
                BINDS,
            ),
            Refused,
        ),
        case(
            "h2c upgrade: ping, then h2 frames",
            {
                let mut b = http1(
                    "GET",
                    "/_ping",
                    "HTTP/1.1",
                    &[
                        "Connection: Upgrade, HTTP2-Settings",
                        "Upgrade: h2c",
                        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
                    ],
                    b"",
                );
                b.extend(h2("POST", start_old, Some(BINDS)));
                b
            },
            Refused,
        ),
        case(
            "Upgrade: h2c alone, on ping",
            http1("GET", "/_ping", "HTTP/1.1", &["Upgrade: h2c"], b""),
            Refused,
        ),
        case(
            "Connection: upgrade alone, on ping",
            http1(
                "GET",
                "/_ping",
                "HTTP/1.1",
                &["Connection: keep-alive, Upgrade"],
                b"",
            ),
            Refused,
        ),
        case(
            "Upgrade: websocket on ping",
            http1(
                "GET",
                "/_ping",
                "HTTP/1.1",
                &["Connection: upgrade", "Upgrade: websocket"],
                b"",
            ),
            Refused,
        ),
        case(
            "Content-Length body, v1.23",
            http1(
                "POST",
                start_old,
                "HTTP/1.1",
                &[json, "Content-Length: 24"],
                BINDS,
            ),
            Refused,
        ),
        case(
            "Content-Length body, v1.41",
            http1(
                "POST",
                start,
                "HTTP/1.1",
                &[json, "Content-Length: 24"],
                BINDS,
            ),
            Refused,
        ),
        case(
            "Content-Length body, HTTP/1.0",
            http1(
                "POST",
                start_old,
                "HTTP/1.0",
                &[json, "Content-Length: 24"],
                BINDS,
            ),
            Refused,
        ),
        case(
            "chunked body",
            http1(
                "POST",
                start_old,
                "HTTP/1.1",
                &[json, "Transfer-Encoding: chunked"],
                &chunked(BINDS),
            ),
            Refused,
        ),
        case(
            "chunked body, HTTP/1.0",
            http1(
                "POST",
                start_old,
                "HTTP/1.0",
                &[json, "Transfer-Encoding: chunked"],
                &chunked(BINDS),
            ),
            Refused,
        ),
        case(
            "chunked and Content-Length: 0",
            http1(
                "POST",
                start,
                "HTTP/1.1",
                &["Content-Length: 0", "Transfer-Encoding: chunked"],
                &chunked(PRIVILEGED),
            ),
            Refused,
        ),
        case(
            "Content-Length and chunked",
            http1(
                "POST",
                start,
                "HTTP/1.1",
                &["Transfer-Encoding: chunked", "Content-Length: 24"],
                &chunked(BINDS),
            ),
            Refused,
        ),
        case(
            "Transfer-Encoding: identity",
            http1(
                "POST",
                start,
                "HTTP/1.1",
                &["Transfer-Encoding: identity"],
                BINDS,
            ),
            Refused,
        ),
        case(
            "Transfer-Encoding: gzip, chunked",
            http1(
                "POST",
                start,
                "HTTP/1.1",
                &["Transfer-Encoding: gzip, chunked"],
                &chunked(BINDS),
            ),
            Refused,
        ),
        case(
            "two Content-Length headers",
            http1(
                "POST",
                start,
                "HTTP/1.1",
                &["Content-Length: 0", "Content-Length: 24"],
                BINDS,
            ),
            Refused,
        ),
        case(
            "Content-Length: +24",
            http1("POST", start, "HTTP/1.1", &["Content-Length: +24"], BINDS),
            Refused,
        ),
        case(
            "Transfer-Encoding with a space before the colon",
            http1(
                "POST",
                start,
                "HTTP/1.1",
                &["Transfer-Encoding : chunked"],
                &chunked(BINDS),
            ),
            Refused,
        ),
        case(
            "Transfer-Encoding folded (obs-fold)",
            http1(
                "POST",
                start,
                "HTTP/1.1",
                &["X-A: b", " Transfer-Encoding: chunked"],
                &chunked(BINDS),
            ),
            Refused,
        ),
        case(
            "Expect: 100-continue with a body",
            http1(
                "POST",
                start,
                "HTTP/1.1",
                &["Expect: 100-continue", "Content-Length: 24"],
                BINDS,
            ),
            Refused,
        ),
        // No length given: by HTTP/1.1 the request has no body, so the start is the agent's own
        // call; the trailing bytes must not reach dockerd in any form.
        case(
            "start with trailing bytes and no length",
            http1(
                "POST",
                "/containers/hs-webapp-2/start",
                "HTTP/1.1",
                &[json],
                BINDS,
            ),
            Reaches("start"),
        ),
        case(
            "pipelined: ping, then create",
            {
                let mut b = get("/_ping");
                b.extend(http1(
                    "POST",
                    "/containers/create",
                    "HTTP/1.1",
                    &["Content-Length: 2"],
                    b"{}",
                ));
                b
            },
            Reaches("ping"),
        ),
        case(
            "pipelined: restart, then an old-version start with a body",
            {
                let mut b = post("/containers/hs-webapp-1/restart?t=1");
                b.extend(http1(
                    "POST",
                    start_old,
                    "HTTP/1.1",
                    &["Content-Length: 24"],
                    BINDS,
                ));
                b
            },
            Reaches("restart"),
        ),
        case(
            "request smuggled in a body",
            {
                let inner = http1(
                    "POST",
                    start_old,
                    "HTTP/1.1",
                    &["Content-Length: 24"],
                    BINDS,
                );
                let len = format!("Content-Length: {}", inner.len());
                http1(
                    "POST",
                    "/containers/hs-webapp-1/unpause",
                    "HTTP/1.1",
                    &[&len],
                    &inner,
                )
            },
            Refused,
        ),
    ]
}

/// Target forms, encodings, segments, versions, query strings, scope.
fn targets() -> Vec<Case> {
    let id1 = id_of("hs-webapp-1");
    let mut v = vec![
        case("absolute-form ping", get("http://docker/_ping"), Refused),
        case(
            "absolute-form start",
            post("http://docker/containers/hs-webapp-2/start"),
            Refused,
        ),
        case(
            "authority-form CONNECT",
            http1("CONNECT", "docker:2375", "HTTP/1.1", &[], b""),
            Refused,
        ),
        case(
            "asterisk-form OPTIONS",
            http1("OPTIONS", "*", "HTTP/1.1", &[], b""),
            Refused,
        ),
        case(
            "percent-encoded name (other-webapp-1)",
            post("/containers/other%2Dwebapp-1/start"),
            Refused,
        ),
        case(
            "percent-encoded slash",
            get("/containers/hs-webapp-1%2F..%2F..%2Finfo"),
            Refused,
        ),
        case("percent-encoded _ping", get("/%5Fping"), Refused),
        case(
            "dot segments to /info",
            get("/containers/hs-webapp-1/json/../../../info"),
            Refused,
        ),
        case(
            "dot segments to another name",
            post("/containers/hs-webapp-1/../other-webapp-1/start"),
            Refused,
        ),
        case(
            "single dot segment",
            post("/containers/hs-webapp-1/./start"),
            Refused,
        ),
        case("double slash", get("//containers/json"), Refused),
        case(
            "double slash before the name",
            post("/containers//hs-webapp-1/start"),
            Refused,
        ),
        case("backslash", get("/containers\\json"), Refused),
        case("trailing slash", get("/_ping/"), Refused),
        case("NUL in the path", get("/_ping\0/info"), Refused),
        // A fragment is not part of a request target; hyper drops it, and what reaches dockerd
        // is the path alone.
        case("fragment", get("/_ping#/../info"), Reaches("ping")),
        case(
            "API v1.23 without a body",
            post("/v1.23/containers/hs-webapp-2/start"),
            Refused,
        ),
        case(
            "API v1.12",
            get("/v1.12/containers/hs-webapp-1/json"),
            Refused,
        ),
        case("API v01.41", get("/v01.41/_ping"), Refused),
        case(
            "start ?checkpoint (the issue's query)",
            post("/containers/hs-webapp-2/start?checkpoint=x&checkpoint-dir=/any/path"),
            Refused,
        ),
        case(
            "start ?detachKeys",
            post("/containers/hs-webapp-2/start?detachKeys=ctrl-x"),
            Refused,
        ),
        case(
            "restart ?signal",
            post("/containers/hs-webapp-1/restart?signal=SIGKILL&t=1"),
            Refused,
        ),
        case(
            "restart t=-1",
            post("/containers/hs-webapp-1/restart?t=-1"),
            Refused,
        ),
        case(
            "stop t=99999",
            post("/containers/hs-webapp-1/stop?t=99999"),
            Refused,
        ),
        // The graceful recycle (issue 16): only `t`, a whole number up to 60.
        case(
            "stop t=61",
            post("/containers/hs-webapp-1/stop?t=61"),
            Refused,
        ),
        case(
            "stop t=-1",
            post("/containers/hs-webapp-1/stop?t=-1"),
            Refused,
        ),
        case(
            "stop t=1.5",
            post("/containers/hs-webapp-1/stop?t=1.5"),
            Refused,
        ),
        case(
            "stop t=05",
            post("/containers/hs-webapp-1/stop?t=05"),
            Refused,
        ),
        case(
            "stop ?signal",
            post("/containers/hs-webapp-1/stop?signal=SIGKILL&t=5"),
            Refused,
        ),
        case(
            "stop t twice",
            post("/containers/hs-webapp-1/stop?t=5&t=60"),
            Refused,
        ),
        case(
            "stop with a body",
            http1(
                "POST",
                "/containers/hs-webapp-1/stop?t=5",
                "HTTP/1.1",
                &["Content-Type: application/json", "Content-Length: 2"],
                b"{}",
            ),
            Refused,
        ),
        case(
            "restart t twice",
            post("/containers/hs-webapp-1/restart?t=1&t=2"),
            Refused,
        ),
        case(
            "restart t encoded",
            post("/containers/hs-webapp-1/restart?%74=1"),
            Refused,
        ),
        case(
            "unpause with a query",
            post("/containers/hs-webapp-1/unpause?x=1"),
            Refused,
        ),
        case(
            "logs follow=true",
            get("/containers/hs-webapp-1/logs?follow=true&stdout=true"),
            Refused,
        ),
        case(
            "inspect size=true",
            get("/containers/hs-webapp-1/json?size=true"),
            Refused,
        ),
        case(
            "list by name filter",
            get(&format!(
                "/containers/json?filters={}",
                enc(r#"{"name":["other"]}"#)
            )),
            Refused,
        ),
        case(
            "list filters as a map of bools",
            get(&format!(
                "/containers/json?filters={}",
                enc(r#"{"label":{"x":true}}"#)
            )),
            Refused,
        ),
        case(
            "events of networks",
            get(&format!(
                "/events?filters={}",
                enc(r#"{"type":["network"]}"#)
            )),
            Refused,
        ),
        case(
            "events exec_start",
            get(&format!(
                "/events?filters={}",
                enc(r#"{"event":["exec_start"]}"#)
            )),
            Refused,
        ),
        case("events since a duration", get("/events?since=10m"), Refused),
        case(
            "semicolon in the query",
            post("/containers/hs-webapp-1/restart?t=1;signal=KILL"),
            Refused,
        ),
    ];
    for (name, r) in [
        ("another project's replica", "other-webapp-1".to_string()),
        ("a non-healable service", "hs-db-1".into()),
        ("a plain container", "decoy".into()),
        (
            "named like a replica, labelled for another project",
            "hs-webapp-7".into(),
        ),
        (
            "a replica number with a leading zero",
            "hs-webapp-01".into(),
        ),
        ("a full id", id1.clone()),
        ("an id prefix", id1[..12].into()),
        ("a short id prefix", "1111".into()),
    ] {
        for op in ["start", "restart", "unpause", "stop"] {
            v.push(case(
                format!("{op} of {name}"),
                post(&format!("/containers/{r}/{op}")),
                Refused,
            ));
        }
        for op in ["json", "logs?stdout=true", "stats?stream=false"] {
            let short = op.split('?').next().unwrap();
            v.push(case(
                format!("{short} of {name}"),
                get(&format!("/containers/{r}/{op}")),
                Refused,
            ));
        }
    }
    v
}

/// Endpoints off the list, every method, HTTP versions, oversized heads.
fn the_rest() -> Vec<Case> {
    let mut v = Vec::new();
    for (m, t) in [
        ("GET", "/info"),
        ("GET", "/system/df"),
        ("POST", "/containers/create"),
        ("POST", "/containers/create?name=hs-webapp-9"),
        ("POST", "/containers/hs-webapp-1/exec"),
        ("POST", "/exec/abc/start"),
        ("POST", "/containers/hs-webapp-1/kill"),
        ("POST", "/containers/hs-webapp-1/update"),
        ("POST", "/containers/hs-webapp-1/rename?name=x"),
        ("POST", "/containers/hs-webapp-1/attach?stream=1"),
        ("GET", "/containers/hs-webapp-1/attach/ws"),
        ("GET", "/containers/hs-webapp-1/archive?path=/"),
        ("PUT", "/containers/hs-webapp-1/archive?path=/"),
        ("GET", "/containers/hs-webapp-1/export"),
        ("GET", "/containers/hs-webapp-1/top"),
        ("POST", "/containers/hs-webapp-1/resize?h=1&w=1"),
        ("POST", "/containers/prune"),
        ("DELETE", "/containers/hs-webapp-1"),
        ("GET", "/images/json"),
        ("POST", "/images/create?fromImage=busybox"),
        ("POST", "/build"),
        ("GET", "/volumes"),
        ("POST", "/networks/create"),
        ("GET", "/swarm"),
        ("POST", "/session"),
        ("GET", "/v1.41/plugins"),
        ("GET", "/"),
    ] {
        v.push(case(
            format!("{m} {t}"),
            http1(m, t, "HTTP/1.1", &[], b""),
            Refused,
        ));
    }
    for m in [
        "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "PRI",
        "post", "Post",
    ] {
        v.push(case(
            format!("{m} on start"),
            http1(m, "/containers/hs-webapp-2/start", "HTTP/1.1", &[], b""),
            Refused,
        ));
    }
    for m in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "get"] {
        v.push(case(
            format!("{m} on inspect"),
            http1(m, "/containers/hs-webapp-1/json", "HTTP/1.1", &[], b""),
            Refused,
        ));
    }
    for version in [
        "HTTP/1.2",
        "HTTP/2.0",
        "HTTP/3",
        "HTTP/0.9",
        "http/1.1",
        "HTTP/1.1 x",
    ] {
        v.push(case(
            format!("version {version}"),
            http1("POST", "/containers/hs-webapp-2/start", version, &[], b""),
            Refused,
        ));
    }
    v.push(case(
        "HTTP/0.9 style request",
        b"GET /info\r\n\r\n".to_vec(),
        Refused,
    ));
    let big = format!("X-Pad: {}", "a".repeat(20_000));
    v.push(case(
        "20 KB header",
        http1(
            "POST",
            "/containers/hs-webapp-2/start",
            "HTTP/1.1",
            &[&big],
            b"",
        ),
        Refused,
    ));
    v.push(case(
        "garbage",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        Refused,
    ));
    v
}

/// What the upstream saw for one case, judged.
fn verdict(case: &Case, seen: &[Vec<u8>]) -> (String, Vec<String>) {
    let mut calls = Vec::new();
    let mut problems = Vec::new();
    // Every call that reached dockerd, and those beyond the proxy's own label check.
    let mut reached = Vec::new();
    let mut acted = Vec::new();
    for conn in seen {
        match judge(conn) {
            Ok(s) => {
                calls.push(format!("{} {}", s.method, short_target(&s.target)));
                reached.push(s.call.clone());
                if !s.is_label_check() {
                    acted.push(s.call.clone());
                }
            }
            Err(e) => {
                calls.push(show(&conn[..conn.len().min(60)]));
                problems.push(format!("VIOLATION {e}"));
            }
        }
    }
    match case.expect {
        Reaches(call) if !reached.iter().any(|c| c == call) => {
            problems.push(format!("the agent's call ({call}) did not reach dockerd"))
        }
        Refused if !acted.is_empty() => problems.push(format!(
            "reached dockerd as {} although it must be refused",
            acted.join(", ")
        )),
        _ => {}
    }
    let upstream = if calls.is_empty() {
        "-".to_string()
    } else {
        calls.join(" | ")
    };
    (upstream, problems)
}

fn short_target(t: &str) -> String {
    let t: String = t
        .split('?')
        .enumerate()
        .map(|(i, p)| {
            if i == 0 {
                p.to_string()
            } else {
                format!("?{}", &p[..p.len().min(24)])
            }
        })
        .collect();
    t.replace(&"1".repeat(64), "<id hs-webapp-1>")
        .replace(&"2".repeat(64), "<id hs-webapp-2>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_requests_reach_dockerd_only_as_the_agents_calls() {
    let h = Harness::start("corpus").await;
    let cases: Vec<Case> = [agent_calls(), bodies(), targets(), the_rest()].concat();
    let mut failed = 0;
    println!("proxy under test: {}", h.under_test);
    println!("{:<62} {:<26} upstream received", "request", "answer");
    for c in &cases {
        let (answer, seen) = h.exchange(&c.bytes).await;
        let (upstream, problems) = verdict(c, &seen);
        println!("{:<62} {:<26} {}", c.name, status_of(&answer), upstream);
        for p in &problems {
            println!("    {p}");
        }
        if !problems.is_empty() {
            failed += 1;
        }
        // Against this crate's proxy the answers are checked too (for another proxy only what
        // reached the upstream counts): refusals are 4xx/5xx or a closed connection.
        if h.under_test.starts_with("socket-proxy") && c.expect == Refused {
            let status = status_of(&answer);
            assert!(
                !status.contains(" 2") && !status.contains(" 3"),
                "{}: refused request answered {status}",
                c.name
            );
        }
    }
    println!("{} requests, {failed} failed", cases.len());
    assert_eq!(
        failed,
        0,
        "{failed} of {} crafted requests failed (table above)",
        cases.len()
    );
}

/// A body refused at its head but sent slowly (a shell's printf, a loaded machine): every part
/// of the request is written without a reset, and the refusal is read after it.
#[tokio::test]
async fn a_refused_body_sent_in_slow_parts_still_gets_its_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::ours("slow-body").await;
    let head = http1(
        "POST",
        "/v1.41/containers/hs-webapp-1/start",
        "HTTP/1.1",
        &[
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
            "Connection: close",
        ],
        b"",
    );
    let body = chunked(PRIVILEGED);
    let (size_line, rest) = body.split_at(body.iter().position(|b| *b == b'\n').unwrap() + 1);
    let (data, end) = rest.split_at(PRIVILEGED.len());
    let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    for (i, part) in [&head[..], size_line, data, end].into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        s.write_all(part)
            .await
            .unwrap_or_else(|e| panic!("part {i} of the request: {e} (the proxy closed early)"));
    }
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        s.read_to_end(&mut answer),
    )
    .await
    .expect("the proxy answers and closes")
    .expect("the answer is read, not reset");
    assert!(
        status_of(&answer).starts_with("HTTP/1.1 400"),
        "{}",
        show(&answer)
    );
    assert!(h.upstream.take().await.is_empty(), "nothing went upstream");
}

/// Random requests from the pieces attackers use; whatever the proxy answers, nothing outside the
/// allow-list may reach the upstream.
#[test]
fn random_requests_reach_dockerd_only_as_the_agents_calls() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(Harness::start("random"));
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&request(), |bytes| {
        let (answer, seen) = rt.block_on(h.exchange(&bytes));
        for conn in &seen {
            if let Err(e) = judge(conn) {
                return Err(TestCaseError::fail(format!(
                    "request {} (answered {}) reached dockerd as: {e}",
                    show(&bytes),
                    status_of(&answer)
                )));
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec![
        "GET", "GET", "POST", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT",
        "get", "PRI",
    ]);
    let version = prop::sample::select(vec![
        "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.2",
    ]);
    let segment = prop::sample::select(vec![
        "containers",
        "containers",
        "hs-webapp-1",
        "hs-webapp-2",
        "hs-webapp-7",
        "hs-webapp-0",
        "other-webapp-1",
        "hs-db-1",
        "decoy",
        "1111111111111111111111111111111111111111111111111111111111111111",
        "1111",
        "json",
        "start",
        "restart",
        "stop",
        "unpause",
        "logs",
        "stats",
        "kill",
        "exec",
        "create",
        "archive",
        "events",
        "_ping",
        "version",
        "info",
        "images",
        "v1.41",
        "v1.23",
        "v1.24",
        "..",
        ".",
        "",
        "%2e%2e",
        "hs%2Dwebapp-1",
        "other-webapp-1%00",
    ]);
    let path = prop::collection::vec(segment, 1..5).prop_map(|s| format!("/{}", s.join("/")));
    let param = prop::sample::select(vec![
        "t=1",
        "t=-1",
        "t=301",
        "t=1%00",
        "all=true",
        "all=yes",
        "size=true",
        "size=false",
        "follow=true",
        "follow=false",
        "tail=50",
        "tail=all",
        "stdout=1",
        "stream=false",
        "one-shot=true",
        "since=0",
        "since=1m",
        "signal=KILL",
        "checkpoint=x",
        "checkpoint-dir=/tmp",
        "name=x",
        "x",
        "filters=%7B%22label%22%3A%5B%22com.docker.compose.project%3Dother%22%5D%7D",
        "filters=%7B%22name%22%3A%5B%22decoy%22%5D%7D",
        "filters=%7B%22type%22%3A%5B%22network%22%5D%7D",
        "filters=garbage",
        "t=1;x=2",
    ]);
    let query = prop::option::of(prop::collection::vec(param, 0..4).prop_map(|p| p.join("&")));
    let header = prop::sample::select(vec![
        "Content-Length: 24",
        "Content-Length: 0",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: identity",
        "Connection: Upgrade",
        "Upgrade: h2c",
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
        "Expect: 100-continue",
        "Content-Type: application/json",
        "Connection: close",
        "Connection: keep-alive",
        "X-Forwarded-For: 1.2.3.4",
        "Content-Length: 24, 24",
        "Transfer-Encoding : chunked",
        " folded: line",
    ]);
    let headers = prop::collection::vec(header, 0..4);
    let body = prop::sample::select(vec![
        Vec::new(),
        BINDS.to_vec(),
        chunked(PRIVILEGED),
        post("/v1.23/containers/hs-webapp-2/start"),
        http1(
            "POST",
            "/containers/hs-webapp-1/start",
            "HTTP/1.1",
            &["Content-Length: 24"],
            BINDS,
        ),
        wire::PREFACE.to_vec(),
    ]);
    let h2_pick = any::<u8>();
    (method, path, query, version, headers, body, h2_pick).prop_map(
        |(method, path, query, version, headers, body, h2_pick)| {
            let target = match query {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            if h2_pick % 8 == 0 {
                // The same request over HTTP/2 with prior knowledge, the body in a DATA frame.
                let b = (!body.is_empty()).then_some(body.as_slice());
                return h2(method, &target, b);
            }
            http1(method, &target, version, &headers, &body)
        },
    )
}
