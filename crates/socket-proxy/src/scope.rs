//! Which containers the agent may touch through the proxy: the replicas of the healable services
//! of one compose project, by the names compose gives them (`<project>-<service>-<n>`).
//!
//! A name is checked on the request alone. Such a name always holds a `-`, so Docker can never
//! read it as an id prefix (ids are hex): it resolves to the container of that exact name or to
//! nothing. Ids, id prefixes and every other name are refused.

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// Longest replica number accepted (compose numbers replicas from 1).
const MAX_REPLICA_DIGITS: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("HEAL_PROJECT is empty: name the compose project whose replicas may be healed")]
    NoProject,
    #[error("HEAL_PROJECT {0:?} is not a compose project name (lower-case letters, digits, '-' and '_', starting with a letter or digit)")]
    BadProject(String),
    #[error("HEAL_SERVICES is empty: name at least one compose service")]
    NoServices,
    #[error(
        "HEAL_SERVICES: {0:?} is not a compose service name (letters, digits, '.', '-' and '_')"
    )]
    BadService(String),
}

#[derive(Debug, Clone)]
pub struct Scope {
    project: String,
    services: Vec<String>,
}

impl Scope {
    pub fn new(project: &str, services: &[String]) -> Result<Self, ScopeError> {
        let project = project.trim();
        if project.is_empty() {
            return Err(ScopeError::NoProject);
        }
        // Compose's own rule for project names.
        let project_ok = project.len() <= 64
            && project.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && project
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !project_ok {
            return Err(ScopeError::BadProject(project.to_string()));
        }
        let services: Vec<String> = services
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if services.is_empty() {
            return Err(ScopeError::NoServices);
        }
        for s in &services {
            let ok = s.len() <= 64
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return Err(ScopeError::BadService(s.clone()));
            }
        }
        Ok(Scope {
            project: project.to_string(),
            services,
        })
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn services(&self) -> &[String] {
        &self.services
    }

    /// The healable services `name` can be a replica of (more than one only when service names
    /// overlap, e.g. `web` and `web-1`); empty when the name is out of scope.
    ///
    /// Replica number 0 is accepted: compose never creates it, and the agent's write-access
    /// check asks to start `<project>-<service>-0` to see Docker's 404 rather than a 403.
    pub fn services_of(&self, name: &str) -> Vec<&str> {
        let Some(rest) = name
            .strip_prefix(self.project.as_str())
            .and_then(|r| r.strip_prefix('-'))
        else {
            return Vec::new();
        };
        self.services
            .iter()
            .filter(|s| {
                rest.strip_prefix(s.as_str())
                    .and_then(|r| r.strip_prefix('-'))
                    .is_some_and(is_replica_number)
            })
            .map(String::as_str)
            .collect()
    }

    /// The label filter the proxy adds to every list and events call (Docker ANDs label
    /// filters, so the answer holds this project's containers only, whatever else is asked).
    pub fn project_filter(&self) -> String {
        format!("{PROJECT_LABEL}={}", self.project)
    }
}

fn is_replica_number(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_REPLICA_DIGITS
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(services: &[&str]) -> Scope {
        let s: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        Scope::new("demo", &s).unwrap()
    }

    #[test]
    fn only_replica_names_of_healable_services_are_in_scope() {
        let s = scope(&["webapp"]);
        assert_eq!(s.services_of("demo-webapp-1"), ["webapp"]);
        assert_eq!(
            s.services_of("demo-webapp-0"),
            ["webapp"],
            "the write probe"
        );
        assert_eq!(s.services_of("demo-webapp-123456"), ["webapp"]);
        for out in [
            "demo-webapp-1234567",
            "demo-webapp-01",
            "demo-webapp-",
            "demo-webapp-1a",
            "demo-webapp",
            "demo-db-1",
            "other-webapp-1",
            "demo-webapp-1-1",
            "demo_webapp_1",
            "xdemo-webapp-1",
            "demo-webapp-1 ",
            "4f3c2b1a",
            "",
        ] {
            assert!(s.services_of(out).is_empty(), "{out:?}");
        }
        let s = scope(&["web", "web-1"]);
        assert_eq!(s.services_of("demo-web-1-2"), ["web-1"]);
        assert_eq!(s.services_of("demo-web-1"), ["web"]);
    }

    #[test]
    fn names_are_validated() {
        let svc = vec!["webapp".to_string()];
        assert!(Scope::new("", &svc).is_err());
        assert!(Scope::new("Demo", &svc).is_err());
        assert!(Scope::new("-demo", &svc).is_err());
        assert!(Scope::new("de\"mo", &svc).is_err());
        assert!(Scope::new("demo", &[]).is_err());
        assert!(Scope::new("demo", &["we b".to_string()]).is_err());
        assert_eq!(
            Scope::new(" my-stack_2 ", &svc).unwrap().project_filter(),
            "com.docker.compose.project=my-stack_2"
        );
    }
}
