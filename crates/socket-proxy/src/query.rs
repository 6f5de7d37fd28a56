//! Query parameters: parsed strictly, each checked against the value rule of its endpoint, and
//! re-encoded by the proxy. What reaches dockerd is the proxy's encoding of a checked value, never
//! the client's bytes; `filters` is re-serialized JSON with the project's label filter added.

use std::collections::BTreeMap;

use crate::refusal::Refusal;
use crate::scope::Scope;

/// Largest decoded value of one parameter (a `filters` JSON of the agent is about 150 bytes).
const MAX_VALUE: usize = 4096;
/// Bounds of a `filters` object.
const MAX_FILTER_KEYS: usize = 8;
const MAX_FILTER_VALUES: usize = 32;
const MAX_FILTER_VALUE_LEN: usize = 256;

/// The rule a parameter's value must meet.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// `true`/`false` (or `1`/`0`); sent as `true`/`false`.
    Bool,
    /// Exactly this value (e.g. `follow=false`: no endless log stream).
    Only(&'static str),
    /// A whole number in this range.
    Int { min: u32, max: u32 },
    /// Seconds since the epoch, optionally with a fraction (`1700000000.5`): what Docker's
    /// `since`/`until` take besides RFC 3339 and durations (which the agent does not send).
    Timestamp,
    /// A `filters` JSON object `{"key": ["value", ...]}` with these keys; the project's label
    /// filter is added to it.
    Filters(&'static [(&'static str, Values)]),
}

/// What the values of one `filters` key may be.
#[derive(Debug, Clone, Copy)]
pub enum Values {
    /// Any short printable string (label filters: ANDed with the project's own).
    Printable,
    /// One of these.
    OneOf(&'static [&'static str]),
}

/// A parameter an endpoint accepts.
pub type Param = (&'static str, Rule);

/// Parses `query` (the part after `?`, possibly empty) against `allowed`: every parameter must be
/// allowed, appear once, and have a valid value. Returns the parameters re-encoded, in the order
/// of `allowed`; `forced_filters` are added to a `filters` parameter (which is created when the
/// client sent none) so that list and events stay inside the project.
pub fn parse(
    query: &str,
    allowed: &[Param],
    endpoint: &'static str,
    scope: &Scope,
    forced_filters: Option<&ForcedFilters>,
) -> Result<String, Refusal> {
    let mut seen: BTreeMap<&'static str, String> = BTreeMap::new();
    if !query.is_empty() {
        for pair in query.split('&') {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(&(name, rule)) = allowed.iter().find(|(n, _)| *n == raw_name) else {
                return Err(Refusal::Param {
                    name: crate::refusal::bounded(raw_name),
                    endpoint,
                });
            };
            if seen.contains_key(name) {
                return Err(Refusal::Value {
                    name,
                    why: "given more than once".into(),
                });
            }
            let value = decode(raw_value).ok_or_else(|| Refusal::Value {
                name,
                why: "not valid percent-encoded UTF-8".into(),
            })?;
            if value.len() > MAX_VALUE {
                return Err(Refusal::Value {
                    name,
                    why: format!("longer than {MAX_VALUE} bytes"),
                });
            }
            let canonical = check(name, rule, &value, scope, forced_filters)?;
            seen.insert(name, canonical);
        }
    }
    if let Some(forced) = forced_filters {
        if !seen.contains_key("filters") {
            seen.insert("filters", forced.apply(BTreeMap::new(), scope));
        }
    }
    let mut out = Vec::new();
    for (name, _) in allowed {
        if let Some(v) = seen.get(name) {
            out.push(format!("{name}={}", encode(v)));
        }
    }
    Ok(out.join("&"))
}

/// Filters the proxy adds whatever the client asked: the project label, and for events the
/// object type.
#[derive(Debug, Clone, Copy)]
pub struct ForcedFilters {
    /// `type=container` too (events of networks and volumes are not the agent's business).
    pub containers_only: bool,
}

impl ForcedFilters {
    fn apply(&self, mut filters: BTreeMap<String, Vec<String>>, scope: &Scope) -> String {
        let mut add = |key: &str, value: String| {
            let values = filters.entry(key.to_string()).or_default();
            if !values.contains(&value) {
                values.push(value);
            }
        };
        add("label", scope.project_filter());
        if self.containers_only {
            add("type", "container".to_string());
        }
        serde_json::to_string(&filters).expect("a map of strings serializes")
    }
}

fn check(
    name: &'static str,
    rule: Rule,
    value: &str,
    scope: &Scope,
    forced: Option<&ForcedFilters>,
) -> Result<String, Refusal> {
    let bad = |why: &str| Refusal::Value {
        name,
        why: why.to_string(),
    };
    match rule {
        Rule::Bool => match value {
            "true" | "1" => Ok("true".into()),
            "false" | "0" => Ok("false".into()),
            _ => Err(bad("must be true or false")),
        },
        Rule::Only(v) if value == v => Ok(v.to_string()),
        Rule::Only(v) => Err(bad(&format!("only {v} is allowed"))),
        Rule::Int { min, max } => {
            let ok = !value.is_empty()
                && value.len() <= 10
                && value.bytes().all(|b| b.is_ascii_digit())
                && (value == "0" || !value.starts_with('0'));
            match value.parse::<u32>() {
                Ok(n) if ok && (min..=max).contains(&n) => Ok(n.to_string()),
                _ => Err(bad(&format!("must be a whole number from {min} to {max}"))),
            }
        }
        Rule::Timestamp => {
            let (secs, frac) = value.split_once('.').unwrap_or((value, "0"));
            let digits = |s: &str, max: usize| {
                !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
            };
            if digits(secs, 12) && digits(frac, 9) {
                Ok(value.to_string())
            } else {
                Err(bad(
                    "must be seconds since the epoch (digits, optionally .fraction)",
                ))
            }
        }
        Rule::Filters(keys) => {
            let parsed: BTreeMap<String, serde_json::Value> = serde_json::from_str(value)
                .map_err(|_| bad("must be a JSON object of string lists"))?;
            if parsed.len() > MAX_FILTER_KEYS {
                return Err(bad("too many filter keys"));
            }
            let mut filters = BTreeMap::new();
            for (key, values) in parsed {
                let Some(&(_, allowed)) = keys.iter().find(|(k, _)| *k == key) else {
                    return Err(bad(&format!(
                        "filter {:?} is not allowed",
                        crate::refusal::bounded(&key)
                    )));
                };
                // Docker also takes {"key": {"value": true}}; the agent does not send it.
                let list = values
                    .as_array()
                    .filter(|l| l.len() <= MAX_FILTER_VALUES)
                    .ok_or_else(|| {
                        bad(&format!(
                            "filter {key}: a list of at most {MAX_FILTER_VALUES} strings"
                        ))
                    })?;
                let mut strings = Vec::new();
                for v in list {
                    let s = v
                        .as_str()
                        .ok_or_else(|| bad(&format!("filter {key}: values must be strings")))?;
                    let ok = match allowed {
                        Values::Printable => {
                            !s.is_empty()
                                && s.len() <= MAX_FILTER_VALUE_LEN
                                && s.bytes().all(|b| (0x20..0x7f).contains(&b))
                        }
                        Values::OneOf(set) => set.contains(&s),
                    };
                    if !ok {
                        return Err(bad(&format!(
                            "filter {key}: value {:?} is not allowed",
                            crate::refusal::bounded(s)
                        )));
                    }
                    strings.push(s.to_string());
                }
                filters.insert(key, strings);
            }
            let forced = forced.copied().unwrap_or(ForcedFilters {
                containers_only: false,
            });
            Ok(forced.apply(filters, scope))
        }
    }
}

/// Percent-decoding as Go's `url.ParseQuery` reads it (`+` is a space); `None` for a malformed
/// escape, a raw byte outside the query characters of RFC 3986, or invalid UTF-8.
fn decode(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let s = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(s, 16).ok()?);
                i += 3;
                continue;
            }
            b'+' => out.push(b' '),
            c if c.is_ascii_alphanumeric() || b"-._~!$'()*,:@/?".contains(&c) => out.push(c),
            _ => return None,
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Everything but the unreserved characters of RFC 3986 percent-encoded: what any decoder
/// (Go's included) reads back exactly.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &c in value.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::new("demo", &["webapp".to_string()]).unwrap()
    }

    const LIST: &[Param] = &[
        ("all", Rule::Bool),
        ("size", Rule::Only("false")),
        ("filters", Rule::Filters(&[("label", Values::Printable)])),
    ];

    #[test]
    fn values_are_checked_and_re_encoded() {
        let s = scope();
        let forced = ForcedFilters {
            containers_only: false,
        };
        let q = parse(
            "all=1&size=false&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D",
            LIST,
            "list",
            &s,
            Some(&forced),
        )
        .unwrap();
        assert_eq!(
            q,
            "all=true&size=false&filters=%7B%22label%22%3A%5B%22a%3Db%22%2C%22com.docker.compose.project%3Ddemo%22%5D%7D"
        );
        // No filters asked: the project's is added all the same.
        assert_eq!(
            parse("", LIST, "list", &s, Some(&forced)).unwrap(),
            "filters=%7B%22label%22%3A%5B%22com.docker.compose.project%3Ddemo%22%5D%7D"
        );
        let t: &[Param] = &[("t", Rule::Int { min: 0, max: 300 })];
        assert_eq!(parse("t=10", t, "restart", &s, None).unwrap(), "t=10");
        for bad in [
            "t=-1",
            "t=301",
            "t=01",
            "t=",
            "t",
            "t=1&t=2",
            "t=1e2",
            "t=%31%30%30%30",
            "signal=KILL",
            "t=10&signal=KILL",
            "T=1",
            "t=1;x",
            "t%3D1",
        ] {
            assert!(parse(bad, t, "restart", &s, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_strict() {
        let s = scope();
        let forced = ForcedFilters {
            containers_only: true,
        };
        let events: &[Param] = &[(
            "filters",
            Rule::Filters(&[
                ("type", Values::OneOf(&["container"])),
                ("event", Values::OneOf(&["die"])),
                ("label", Values::Printable),
            ]),
        )];
        let q = |json: &str| {
            parse(
                &format!("filters={}", encode(json)),
                events,
                "events",
                &s,
                Some(&forced),
            )
        };
        assert!(q(r#"{"event":["die"],"type":["container"]}"#).is_ok());
        for bad in [
            r#"{"type":["network"]}"#,
            r#"{"event":["exec_start"]}"#,
            r#"{"container":["x"]}"#,
            r#"{"label":{"a":true}}"#,
            r#"{"label":["a\u0000"]}"#,
            r#"{"label":[1]}"#,
            r#"["label"]"#,
            r#"{"label":[""]}"#,
            "not json",
        ] {
            assert!(q(bad).is_err(), "{bad}");
        }
        let got = q(r#"{"label":["com.docker.compose.project=other"]}"#).unwrap();
        assert!(
            got.contains(&encode("com.docker.compose.project=demo")),
            "the project's own filter is ANDed in: {got}"
        );
    }

    #[test]
    fn decoding_is_strict_and_encoding_round_trips() {
        assert_eq!(decode("a+b%2Fc").unwrap(), "a b/c");
        for bad in ["%", "%4", "%zz", "a b", "a\"b", "%ff", "a#b", "a[b]"] {
            assert!(decode(bad).is_none(), "{bad}");
        }
        let v = "{\"label\":[\"x=y z&%\"]}";
        assert_eq!(decode(&encode(v)).unwrap(), v);
    }
}
