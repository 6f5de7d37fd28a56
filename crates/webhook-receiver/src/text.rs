//! Bounded text and JSON: whatever the containers, the model or a webhook sender say, what the
//! agent keeps of it (logs, incidents, timelines) has a size limit. The lowest module of the
//! crate: everything may use it, it uses nothing of ours.

use serde_json::{json, Value};

/// At most `max` bytes of `s` (on a char boundary), marked when cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated]", &s[..end])
}

/// The last `max` bytes of `s`: for logs, the end is what matters.
pub fn bounded_tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[truncated]…{}", &s[start..])
}

/// An error with its sources ("error sending request: connection refused"), at most 500 bytes.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    bounded(&text, 500)
}

/// `value` itself when its JSON text is at most `max` bytes; otherwise a small object saying
/// how large it was, with the start of its text. Tool results and model arguments go into
/// incidents through this, so no single entry can grow an incident without bound.
pub fn bounded_json(value: Value, max: usize) -> Value {
    let text = value.to_string();
    if text.len() <= max {
        return value;
    }
    json!({
        "truncated": true,
        "bytes": text.len(),
        "head": bounded(&text, max / 2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cut_on_char_boundaries() {
        assert_eq!(bounded("héllo", 2), "h…[truncated]");
        assert_eq!(bounded_tail("héllo", 4), "[truncated]…llo");
        assert_eq!(bounded("ok", 10), "ok");
    }

    #[test]
    fn large_json_is_replaced_by_its_size_and_head() {
        let small = json!({"a": 1});
        assert_eq!(bounded_json(small.clone(), 100), small);
        let big = json!({"logs": "x".repeat(10_000)});
        let cut = bounded_json(big, 1000);
        assert_eq!(cut["truncated"], true);
        assert!(cut["bytes"].as_u64().unwrap() > 10_000);
        assert!(cut.to_string().len() < 1000);
    }
}
