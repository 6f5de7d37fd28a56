//! The judge of what reached dockerd, written apart from the proxy's own rules (and parsing with
//! httparse, not hyper), so that a mistake in the proxy is not repeated here.
//!
//! Allowed on the upstream connection, exactly one HTTP/1.x request with no body and nothing after
//! its head, and that request one of:
//! - GET/HEAD `/_ping`, `/version` (no query);
//! - GET/HEAD `/containers/json` with `all`, `size=false`, and `filters` whose labels include
//!   this project's; `/events` with `since`, `until`, and such `filters`;
//! - GET/HEAD `/containers/{ref}/json` (no query), `/logs` (follow=false only), `/stats`;
//! - POST `/containers/{ref}/start`, `/unpause` (no query), `/restart`, `/stop` (`t` from 0 to 300);
//!
//! optionally under `/v1.N` with N >= 24, where `{ref}` is a replica of the healable service: its
//! full id, or a name `hs-webapp-<n>` (names are what the label check inspects). The one name of
//! that form that belongs to another project (`hs-webapp-7`) may only be inspected by name (the
//! label check itself), never acted on, read, or inspected by id.

use std::collections::BTreeMap;

use super::recorder::{containers, PROJECT, SERVICE};

/// One request that reached the upstream, as the judge read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// `ping`, `version`, `list`, `events`, `json`, `logs`, `stats`, `start`, ...
    pub call: String,
    /// The container reference, for container calls.
    pub reference: Option<String>,
}

impl Seen {
    /// The proxy's label check: an inspect by name, no query.
    pub fn is_label_check(&self) -> bool {
        self.call == "json"
            && self.reference.as_deref().is_some_and(|r| r.contains('-'))
            && !self.target.contains('?')
    }
}

/// Judges the bytes of one upstream connection.
pub fn judge(bytes: &[u8]) -> Result<Seen, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(format!("an incomplete request head: {}", show(bytes)))
        }
        Err(e) => return Err(format!("not an HTTP/1.x request ({e}): {}", show(bytes))),
    };
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("").to_string();
    let mut problems = Vec::new();
    if bytes.len() > len {
        problems.push(format!(
            "{} bytes after the request head (a body or another request): {}",
            bytes.len() - len,
            show(&bytes[len..])
        ));
    }
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
        match name.as_str() {
            "transfer-encoding" => problems.push(format!("transfer-encoding: {value}")),
            "content-length" if value.trim() != "0" => {
                problems.push(format!("content-length: {value}"))
            }
            "upgrade" | "http2-settings" => problems.push(format!("{name}: {value}")),
            "connection" if value.contains("upgrade") => {
                problems.push(format!("connection: {value}"))
            }
            _ => {}
        }
    }
    let seen = match call(&method, &target) {
        Ok(seen) => seen,
        Err(e) => {
            problems.push(e);
            Seen {
                method: method.clone(),
                target: target.clone(),
                call: "?".into(),
                reference: None,
            }
        }
    };
    if problems.is_empty() {
        Ok(seen)
    } else {
        Err(format!(
            "{method} {}: {}",
            show(target.as_bytes()),
            problems.join("; ")
        ))
    }
}

fn call(method: &str, target: &str) -> Result<Seen, String> {
    if !target.starts_with('/') {
        return Err("not an origin-form target".into());
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path.contains('%') || path.contains("//") || path.contains("/./") || path.contains("/../") {
        return Err("an encoded or non-canonical path".into());
    }
    let mut segs: Vec<&str> = path[1..].split('/').collect();
    if let Some(v) = segs.first().and_then(|s| s.strip_prefix("v1.")) {
        match v.parse::<u32>() {
            Ok(minor) if minor >= 24 && !v.starts_with('0') => {
                segs.remove(0);
            }
            _ => {
                return Err(format!(
                    "API version {} (before 1.24, or malformed)",
                    segs[0]
                ))
            }
        }
    }
    let params = parse_query(query)?;
    let read = method == "GET" || method == "HEAD";
    let write = method == "POST";
    let (name, reference) = match (segs.as_slice(), read, write) {
        (["_ping"], true, _) => ("ping", None),
        (["version"], true, _) => ("version", None),
        (["containers", "json"], true, _) => ("list", None),
        (["events"], true, _) => ("events", None),
        (["containers", r, op @ ("json" | "logs" | "stats")], true, _) => (*op, Some(*r)),
        (["containers", r, op @ ("start" | "restart" | "stop" | "unpause")], _, true) => {
            (*op, Some(*r))
        }
        _ => return Err("not on the allow-list".into()),
    };
    let allowed: &[&str] = match name {
        "list" => &["all", "size", "filters"],
        "events" => &["since", "until", "filters"],
        "logs" => &[
            "follow",
            "stdout",
            "stderr",
            "since",
            "until",
            "timestamps",
            "tail",
        ],
        "stats" => &["stream", "one-shot"],
        "restart" | "stop" => &["t"],
        _ => &[],
    };
    for (k, v) in &params {
        if !allowed.contains(&k.as_str()) {
            return Err(format!("query parameter {k:?} on {name}"));
        }
        let fine = match k.as_str() {
            "t" => v.parse::<u32>().is_ok_and(|t| t <= 300) && !v.starts_with('+'),
            "follow" | "size" => v == "false" || v == "0",
            "filters" => project_filtered(v),
            "tail" => v.parse::<u32>().is_ok(),
            "since" | "until" => v.chars().all(|c| c.is_ascii_digit() || c == '.'),
            _ => ["true", "false", "1", "0"].contains(&v.as_str()),
        };
        if !fine {
            return Err(format!("query parameter {k}={v:?} on {name}"));
        }
    }
    if matches!(name, "list" | "events") && !params.contains_key("filters") {
        return Err(format!("{name} without the project's label filter"));
    }
    if let Some(r) = reference {
        in_scope(name, r, query.is_empty())?;
    }
    Ok(Seen {
        method: method.into(),
        target: target.into(),
        call: name.into(),
        reference: reference.map(str::to_string),
    })
}

fn in_scope(call: &str, r: &str, no_query: bool) -> Result<(), String> {
    let all = containers();
    let by_id = all.iter().find(|c| c.id == r);
    match by_id {
        Some(c) if c.project == PROJECT && c.service == SERVICE => return Ok(()),
        Some(c) => return Err(format!("{call} of {} (by id), outside the scope", c.name)),
        None => {}
    }
    let replica = r
        .strip_prefix(&format!("{PROJECT}-{SERVICE}-"))
        .is_some_and(|n| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n == "0" || !n.starts_with('0'))
        });
    if !replica {
        return Err(format!(
            "{call} of {r:?}, not a replica of {PROJECT}-{SERVICE}"
        ));
    }
    let foreign = all
        .iter()
        .any(|c| c.name == r && (c.project != PROJECT || c.service != SERVICE));
    if foreign && !(call == "json" && no_query) {
        return Err(format!(
            "{call} of {r}, named like a replica but labelled for another project"
        ));
    }
    Ok(())
}

/// `filters` must hold this project's label filter (Docker ANDs label filters).
fn project_filtered(v: &str) -> bool {
    let Ok(map) = serde_json::from_str::<BTreeMap<String, serde_json::Value>>(v) else {
        return false;
    };
    let want = format!("com.docker.compose.project={PROJECT}");
    map.get("label")
        .and_then(|l| l.as_array())
        .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(&want)))
}

fn parse_query(q: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if q.is_empty() {
        return Ok(out);
    }
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = unescape(k).ok_or("a malformed query")?;
        let v = unescape(v).ok_or("a malformed query")?;
        if out.insert(k.clone(), v).is_some() {
            return Err(format!("query parameter {k:?} twice"));
        }
    }
    Ok(out)
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                out.push(
                    u8::from_str_radix(std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?, 16).ok()?,
                );
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Bytes for a report line: printable, bounded.
pub fn show(b: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(&b[..b.len().min(90)])
        .escape_debug()
        .collect();
    if b.len() > 90 {
        format!("{s}...")
    } else {
        s
    }
}
