//! Scope in front of every tool call (a name must resolve to a live replica of the run's
//! service), the tools' errors, and the bounds on what tools return. Whether acting on a replica
//! is right is [`crate::policy`]'s call.

use crate::runtime::{ContainerRef, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool {0:?}; the tools are: {1}")]
    UnknownTool(String, String),
    #[error("invalid arguments for {tool}: {reason}")]
    InvalidArgs { tool: String, reason: String },
    #[error("{0}")]
    OutOfScope(String),
    /// The policy said no, with its reason.
    #[error("{0}")]
    Denied(String),
    #[error("docker: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("run stopped: {0}")]
    Stop(String),
}

/// Finds `name` among the service's live replicas (exact container name, or full container id).
/// Anything else is refused, with the names that would be accepted.
pub fn resolve(
    replicas: &[ContainerRef],
    name: &str,
    service: &str,
    project: &str,
) -> Result<ContainerRef, ToolError> {
    let wanted = name.trim().trim_start_matches('/');
    if let Some(r) = replicas
        .iter()
        .find(|r| r.name == wanted || (wanted.len() >= 12 && r.id == wanted))
    {
        return Ok(r.clone());
    }
    let allowed: Vec<&str> = replicas
        .iter()
        .map(|r| r.name.as_str())
        .take(super::MAX_REPLICAS_LISTED)
        .collect();
    Err(ToolError::OutOfScope(format!(
        "container {:?} is not a replica of service {service:?} in project {project:?}; this run may only touch: {}",
        bounded(wanted, 128),
        if allowed.is_empty() { "(none)".to_string() } else { allowed.join(", ") }
    )))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, id: &str) -> ContainerRef {
        ContainerRef {
            id: id.into(),
            name: name.into(),
            project: "p".into(),
            service: "webapp".into(),
            labels: Default::default(),
        }
    }

    #[test]
    fn resolve_accepts_exact_names_and_full_ids_only() {
        let reps = [
            r("p-webapp-1", "aaaaaaaaaaaaaaaa"),
            r("p-webapp-2", "bbbbbbbbbbbbbbbb"),
        ];
        assert_eq!(
            resolve(&reps, "p-webapp-2", "webapp", "p").unwrap().id,
            "bbbbbbbbbbbbbbbb"
        );
        assert_eq!(
            resolve(&reps, "/p-webapp-1", "webapp", "p").unwrap().id,
            "aaaaaaaaaaaaaaaa"
        );
        assert_eq!(
            resolve(&reps, "aaaaaaaaaaaaaaaa", "webapp", "p")
                .unwrap()
                .name,
            "p-webapp-1"
        );
        for bad in [
            "p-webapp",
            "webapp",
            "aaaa",
            "p-nginx-1",
            "p-webapp-1; rm -rf /",
            "",
        ] {
            let e = resolve(&reps, bad, "webapp", "p").unwrap_err();
            assert!(matches!(e, ToolError::OutOfScope(_)), "{bad}: {e}");
            assert!(e.to_string().contains("p-webapp-1, p-webapp-2"));
        }
    }

    #[test]
    fn bounds_cut_on_char_boundaries() {
        assert_eq!(bounded("héllo", 2), "h…[truncated]");
        assert_eq!(bounded_tail("héllo", 4), "[truncated]…llo");
        assert_eq!(bounded("ok", 10), "ok");
    }
}
