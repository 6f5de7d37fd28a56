//! What nginx saw, from its own log (nginx/nginx.conf): the access log keeps every request that
//! failed or that nginx had to pass to another replica, and the error log says why an attempt on
//! a replica failed (refused, reset, timed out).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NginxView {
    /// Requests nginx answered with 5xx: what users saw fail.
    pub failed: usize,
    /// Requests served in the end, but only after nginx passed them on from a replica that
    /// failed them (the access log's `upstream_status` lists more than one attempt).
    pub retried: usize,
    /// Attempts on a replica that failed, by the error log's reason.
    pub upstream_errors: BTreeMap<String, usize>,
    /// Of those, attempts that failed after nginx had sent the request (reset, closed or timed
    /// out while waiting for the answer): nginx passes such a request on only when its method
    /// is idempotent, so a POST there is a failed request. Failing to connect is always safe.
    pub cut_after_sending: usize,
}

/// One access-log line (`... "GET / HTTP/1.1" 200 upstream=A, B upstream_status=502, 200 time=...`):
/// its status and how many replicas were tried.
fn access_line(line: &str) -> Option<(u16, usize)> {
    let (head, rest) = line.split_once(" upstream=")?;
    let status = head.rsplit(' ').next()?.parse().ok()?;
    let statuses = rest.split_once(" upstream_status=")?.1;
    let statuses = statuses.split(" time=").next()?;
    // Attempts are separated by ", "; " : " separates internal redirects (none here).
    let attempts = statuses.split([',', ':']).count();
    Some((status, attempts))
}

/// The reason of an `[error]` line about an upstream, in a few words.
fn error_reason(line: &str) -> Option<&'static str> {
    if !line.contains("[error]") || !line.contains("upstream") {
        return None;
    }
    Some(if line.contains("Connection refused") {
        "connection refused"
    } else if line.contains("Connection reset") {
        "connection reset"
    } else if line.contains("prematurely closed") {
        "closed before the response"
    } else if line.contains("timed out") {
        "timed out"
    } else if line.contains("No route to host") || line.contains("Host is unreachable") {
        "no route to host"
    } else if line.contains("could not be resolved") || line.contains("resolver") {
        "name not resolved"
    } else {
        "other"
    })
}

pub fn parse(log: &str) -> NginxView {
    let mut view = NginxView::default();
    for line in log.lines() {
        if let Some((status, attempts)) = access_line(line) {
            if status >= 500 {
                view.failed += 1;
            } else if attempts > 1 {
                view.retried += 1;
            }
        } else if let Some(reason) = error_reason(line) {
            *view.upstream_errors.entry(reason.to_string()).or_default() += 1;
            if !line.contains("while connecting to upstream") {
                view.cut_after_sending += 1;
            }
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_failures_retries_and_reasons() {
        let log = r#"172.20.0.1 "GET / HTTP/1.1" 200 upstream=172.20.0.3:8000, 172.20.0.4:8000 upstream_status=502, 200 time=0.002
172.20.0.1 "GET / HTTP/1.1" 502 upstream=172.20.0.3:8000 upstream_status=502 time=0.001
172.20.0.1 "GET / HTTP/1.1" 504 upstream=172.20.0.3:8000, 172.20.0.5:8000 upstream_status=504, 504 time=5.0
2026/12/05 20:00:00 [error] 29#29: *7 connect() failed (111: Connection refused) while connecting to upstream, client: 172.20.0.1
2026/12/05 20:00:00 [error] 29#29: *8 upstream timed out (110: Connection timed out) while connecting to upstream
2026/12/05 20:00:00 [error] 29#29: *9 recv() failed (104: Connection reset by peer) while reading response header from upstream
2026/12/05 20:00:00 [notice] 1#1: signal process started
"#;
        let view = parse(log);
        assert_eq!(view.failed, 2);
        assert_eq!(view.retried, 1);
        assert_eq!(view.upstream_errors["connection refused"], 1);
        assert_eq!(view.upstream_errors["timed out"], 1);
        assert_eq!(view.upstream_errors["connection reset"], 1);
        assert_eq!(view.upstream_errors.len(), 3);
        // Refused and timed out while connecting: safe; reset while reading: cut.
        assert_eq!(view.cut_after_sending, 1);
    }
}
