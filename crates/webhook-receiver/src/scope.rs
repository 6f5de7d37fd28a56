//! What the agent may touch: the containers of a fixed set of compose services in one compose project.
//!
//! Every tool call and every trigger goes through here. Alerts, events and model output can narrow a
//! run to a service in this set; nothing they say can add to it.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    project: String,
    services: BTreeSet<String>,
}

impl Scope {
    pub fn new(project: impl Into<String>, services: impl IntoIterator<Item = String>) -> Self {
        Scope {
            project: project.into(),
            services: services.into_iter().collect(),
        }
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(String::as_str)
    }

    /// The allowed service named by `candidate`, if any (exact match only: no prefixes, no globbing).
    pub fn service(&self, candidate: &str) -> Option<&str> {
        self.services.get(candidate).map(String::as_str)
    }

    pub fn allows(&self, project: &str, service: &str) -> bool {
        project == self.project && self.services.contains(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_project_and_service_are_allowed() {
        let s = Scope::new("demo", ["webapp".to_string()]);
        assert!(s.allows("demo", "webapp"));
        assert!(!s.allows("demo", "webapp2"));
        assert!(!s.allows("demo", "web"));
        assert!(!s.allows("other", "webapp"));
        assert_eq!(s.service("webapp"), Some("webapp"));
        assert_eq!(s.service("nginx"), None);
        assert_eq!(s.service("webapp*"), None);
    }
}
