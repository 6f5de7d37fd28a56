//! Scope in front of every tool call (a name must resolve to a live replica of the run's
//! service), the tools' errors, and the bounds on what tools return. Whether acting on a replica
//! is right is [`crate::policy`]'s call.

use crate::runtime::{ContainerRef, RuntimeError};
pub use crate::text::{bounded, bounded_tail};

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

/// The replica `name` stands for, by any of its aliases: its name, `/name` (Docker's form), its
/// full id, or an unambiguous id prefix of 12 characters or more. Aliases of one container all
/// find the same one, so a claim by id covers every way of naming it.
pub fn find<'a>(replicas: &'a [ContainerRef], name: &str) -> Option<&'a ContainerRef> {
    let wanted = name.trim().trim_start_matches('/');
    if wanted.is_empty() {
        return None;
    }
    if let Some(r) = replicas.iter().find(|r| r.name == wanted || r.id == wanted) {
        return Some(r);
    }
    if wanted.len() < 12 || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut by_prefix = replicas.iter().filter(|r| r.id.starts_with(wanted));
    match (by_prefix.next(), by_prefix.next()) {
        (Some(r), None) => Some(r),
        _ => None,
    }
}

/// Finds `name` among the service's live replicas ([`find`]). Anything else is refused, with the
/// names that would be accepted.
pub fn resolve(
    replicas: &[ContainerRef],
    name: &str,
    service: &str,
    project: &str,
) -> Result<ContainerRef, ToolError> {
    let wanted = name.trim().trim_start_matches('/');
    if let Some(r) = find(replicas, name) {
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
        assert_eq!(
            resolve(&reps, "bbbbbbbbbbbb", "webapp", "p").unwrap().name,
            "p-webapp-2",
            "a 12-character id prefix"
        );
        for bad in [
            "p-webapp",
            "webapp",
            "aaaa",
            "aaaaaaaaaaaz",
            "p-nginx-1",
            "p-webapp-1; rm -rf /",
            "",
        ] {
            let e = resolve(&reps, bad, "webapp", "p").unwrap_err();
            assert!(matches!(e, ToolError::OutOfScope(_)), "{bad}: {e}");
            assert!(e.to_string().contains("p-webapp-1, p-webapp-2"));
        }
    }
}
