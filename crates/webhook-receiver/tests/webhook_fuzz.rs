//! `POST /webhook` against whatever arrives: random bytes, random JSON, damaged Alertmanager
//! payloads, bodies over the limit or broken off. Through the real agent over HTTP: the answer is
//! always the expected 2xx/4xx with a JSON body (an `error` string when refused), never a 5xx,
//! never a dropped connection, and the agent keeps serving.
//! No Docker needed: the project is given, and the few payloads that name the healed service only
//! start runs that find no replica.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};
use support::{spawn_agent_with, token};

const TOKEN: &str = "fuzz-t0ken";
const MAX_BODY: usize = 4096;

/// Keys and strings Alertmanager's payload uses, mixed with random ones, so that random JSON
/// reaches deep into the parser instead of failing at the first field.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "version", "status", "alerts", "labels", "annotations", "startsAt", "endsAt",
            "fingerprint", "groupKey", "receiver", "alertname", "service", "job", "summary",
            "description", "generatorURL", "truncatedAlerts", "commonLabels",
        ])
        .prop_map(str::to_string),
        1 => "[a-zA-Z_]{0,8}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "4", "3", "firing", "resolved", "webapp", "db", "", "2026-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z", "+275760-09-13T00:00:00Z", "-262143-01-01T00:00:00Z",
            "1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid payload with random alerts, then damaged in random places.
fn damaged_payload() -> impl Strategy<Value = Value> {
    let alert = (
        prop::collection::btree_map(key(), text(), 0..4),
        prop_oneof![
            3 => Just(json!("firing")),
            1 => Just(json!("resolved")),
            1 => json_value()
        ],
        prop_oneof![
            3 => Just(json!("webapp")),
            1 => Just(json!("db")),
            1 => json_value()
        ],
        prop_oneof![4 => Just(json!("2026-01-01T00:00:00Z")), 1 => json_value()],
    )
        .prop_map(|(labels, status, service, starts)| {
            let mut labels: Map<String, Value> = labels
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            labels.insert("service".into(), service);
            json!({"status": status, "labels": labels, "annotations": {"summary": "x"},
                   "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "f"})
        });
    (
        prop::collection::vec(alert, 0..4),
        prop_oneof![
            2 => Just(vec![]),
            1 => prop::collection::vec((key(), json_value()), 1..3),
        ],
        prop_oneof![4 => Just(json!("4")), 1 => json_value()],
    )
        .prop_map(|(alerts, damage, version)| {
            let mut v = json!({"version": version, "status": "firing", "receiver": "r",
                               "groupKey": "{}", "alerts": alerts});
            for (k, value) in damage {
                v[k] = value;
            }
            v
        })
}

#[derive(Debug, Clone)]
enum Auth {
    Right,
    Missing,
    Wrong(String),
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        8 => Just(Auth::Right),
        1 => Just(Auth::Missing),
        1 => "[ -~]{0,20}".prop_map(Auth::Wrong),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        8 => Just(Some("application/json".to_string())),
        1 => Just(Some("application/json; charset=utf-8".to_string())),
        1 => Just(None),
        1 => "[ -~]{0,30}".prop_map(Some),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..300),
        3 => json_value().prop_map(|v| v.to_string().into_bytes()),
        5 => damaged_payload().prop_map(|v| v.to_string().into_bytes()),
        1 => (1usize..3).prop_map(|n| vec![b' '; MAX_BODY * n]),
    ]
}

/// What the agent must answer for this request, or `None` for "200 or 400: the body decides".
fn expected(auth: &Auth, ct: &Option<String>, body: &[u8]) -> Option<u16> {
    if !matches!(auth, Auth::Right) {
        return if body.len() > MAX_BODY {
            // The body limit is checked first, before the handler authenticates.
            Some(413)
        } else {
            Some(401)
        };
    }
    if body.len() > MAX_BODY {
        return Some(413);
    }
    let mime = ct
        .as_deref()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" {
        return Some(415);
    }
    None
}

#[test]
fn any_request_gets_a_4xx_or_2xx_with_json_and_the_agent_keeps_serving() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let agent = rt.block_on(spawn_agent_with(
        "fuzz",
        &["--webhook-max-bytes", &MAX_BODY.to_string()],
        token(TOKEN),
    ));
    let url = format!("{}/webhook", agent.url);
    let client = reqwest::Client::new();
    let mut runner = TestRunner::new(Config {
        cases: 600,
        failure_persistence: None,
        ..Config::default()
    });
    let counts = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    runner
        .run(&(auth(), content_type(), body()), |(auth, ct, body)| {
            let want = expected(&auth, &ct, &body);
            let (status, text) = rt.block_on(async {
                let mut r = client.post(&url).body(body.clone());
                if let Some(ct) = &ct {
                    if let Ok(v) = reqwest::header::HeaderValue::from_str(ct) {
                        r = r.header("content-type", v);
                    }
                }
                match &auth {
                    Auth::Right => r = r.bearer_auth(TOKEN),
                    Auth::Wrong(t) => {
                        if let Ok(v) =
                            reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                        {
                            r = r.header("authorization", v);
                        }
                    }
                    Auth::Missing => {}
                }
                let resp = r.send().await.expect("the agent answers every request");
                let status = resp.status().as_u16();
                (status, resp.text().await.expect("a whole body"))
            });
            *counts.lock().unwrap().entry(status).or_default() += 1;
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                TestCaseError::fail(format!("{status}: body is not JSON ({e}): {text}"))
            })?;
            match want {
                Some(code) => prop_assert_eq!(status, code, "{}", text),
                None => prop_assert!(status == 200 || status == 400, "{} {}", status, text),
            }
            if status == 200 {
                prop_assert_eq!(&v["status"], "accepted");
            } else {
                prop_assert!(v["error"].is_string(), "{}", text);
            }
            Ok(())
        })
        .unwrap();
    let counts = counts.into_inner().unwrap();
    eprintln!(
        "statuses over {} requests: {counts:?}",
        counts.values().sum::<usize>()
    );
    // The generators must reach both ends of the parser, or the test proves little.
    assert!(
        counts.get(&200).copied().unwrap_or(0) > 30,
        "too few accepted: {counts:?}"
    );
    assert!(
        counts.get(&400).copied().unwrap_or(0) > 30,
        "too few refused: {counts:?}"
    );
    let health = rt.block_on(agent.get_json("/healthz"));
    assert_eq!(health["project"], "fuzz");
    rt.block_on(agent.stop());
}

/// Raw HTTP/1.1 on a socket, for requests reqwest will not send: a body that breaks off.
fn raw_request(addr: &str, head: &str, body: &[u8], close_early: bool) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    if close_early {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_body_over_the_limit_is_413() {
    let agent = spawn_agent_with(
        "limits",
        &["--webhook-max-bytes", &MAX_BODY.to_string()],
        token(TOKEN),
    )
    .await;
    let addr = agent.url.trim_start_matches("http://").to_string();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");

    // Content-Length over the limit: refused before the body is read.
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        MAX_BODY + 1
    );
    let (status, body) = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || raw_request(&addr, &head, &vec![b' '; MAX_BODY + 1], false)
    })
    .await
    .unwrap();
    assert_eq!(status, 413, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("larger than 4096"));

    // Chunked, no length announced: cut off at the limit.
    let chunk = vec![b' '; 1000];
    let mut chunked = Vec::new();
    for _ in 0..6 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || raw_request(&addr, &head, &chunked, false)
    })
    .await
    .unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());

    // A body that breaks off before its announced length: incomplete, not too large.
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let (status, body) = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || raw_request(&addr, &head, b"{\"version\": \"4\"", true)
    })
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("could not read the request body"),
        "{v}"
    );

    let m = agent.metrics().await;
    for line in [
        "healing_webhooks_received_total{result=\"payload_too_large\"} 2",
        "healing_webhooks_received_total{result=\"bad_request\"} 1",
    ] {
        assert!(m.contains(line), "missing {line}");
    }
    agent.stop().await;
}
