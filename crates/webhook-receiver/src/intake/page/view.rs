//! What the page shows, gathered through the agent's own read paths: the live replicas
//! ([`crate::diagnosis::observe`], Docker's state only), the incident store's recent incidents, and
//! the escalations among them that still stand. No lock is held across an await.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::{AppState, DockerAccess};
use crate::diagnosis::{self, Depth};
use crate::incidents::{EscalationReason, Incident, Outcome, ReplicaDiagnosis};

/// Incidents listed, newest first (`GET /incidents` has the rest).
pub const INCIDENTS_SHOWN: usize = 25;
/// Incidents searched for escalations that still stand (each reload clones them: bounded).
const ESCALATIONS_SEARCHED: usize = 200;
/// A page must render even when Docker hangs.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(3);

pub struct AgentView {
    pub project: String,
    pub decider: String,
    pub docker_access: String,
    pub dry_run: bool,
    pub docker_events: bool,
    /// `WEBHOOK_AUTH=none`: alerts are taken without the token.
    pub webhook_open: bool,
    pub busy: bool,
    pub warnings: Vec<String>,
}

pub struct ReplicaRow {
    pub diagnosis: ReplicaDiagnosis,
    pub serving: bool,
}

pub struct ServiceView {
    pub service: String,
    /// The replicas now, or why they could not be listed.
    pub replicas: Result<Vec<ReplicaRow>, String>,
}

pub struct OpenEscalation {
    pub incident: String,
    pub at: DateTime<Utc>,
    pub reason: EscalationReason,
    pub detail: String,
    pub count: u32,
    /// Each replica named, and whether it serves now (`None`: unknown).
    pub replicas: Vec<(String, Option<bool>)>,
}

pub struct PageData {
    pub now: DateTime<Utc>,
    pub agent: AgentView,
    pub services: Vec<ServiceView>,
    pub escalations: Vec<OpenEscalation>,
    /// The escalation window: how long a recurrence stays on the page.
    pub window: Duration,
    pub incidents: Vec<Incident>,
}

pub async fn gather(s: &AppState) -> PageData {
    let engine = &s.engine;
    let ctx = engine.context();
    let now = ctx.clock.now();
    let project = engine.scope().project().to_string();
    let mut services = Vec::new();
    for service in engine.scope().services() {
        let observed = tokio::time::timeout(
            OBSERVE_TIMEOUT,
            diagnosis::observe(ctx, &project, service, Depth::STATE_ONLY),
        )
        .await;
        let replicas = match observed {
            Ok(Ok(obs)) => Ok(obs
                .replicas
                .into_iter()
                .map(|o| ReplicaRow {
                    serving: o.state.is_serving(),
                    diagnosis: o.diagnosis,
                })
                .collect()),
            Ok(Err(e)) => Err(format!("cannot list the replicas: {e}")),
            Err(_) => Err(format!(
                "Docker did not answer within {}s",
                OBSERVE_TIMEOUT.as_secs()
            )),
        };
        services.push(ServiceView {
            service: service.to_string(),
            replicas,
        });
    }

    let serving = |name: &str| {
        services
            .iter()
            .filter_map(|s| s.replicas.as_ref().ok())
            .flatten()
            .find(|r| r.diagnosis.name == name)
            .map(|r| r.serving)
    };
    let window = ctx.ledger.history().policy().window;
    let searched = s.incidents.recent(ESCALATIONS_SEARCHED);
    let escalations = open_escalations(&searched, &serving, now, window);
    let mut incidents = searched;
    incidents.truncate(INCIDENTS_SHOWN);

    let docker = s.docker.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let decider = match engine.strategy().describe() {
        Some((provider, model)) => {
            format!("{} ({provider} {model})", engine.strategy().mode().as_str())
        }
        None => engine.strategy().mode().as_str().to_string(),
    };
    PageData {
        now,
        agent: AgentView {
            project,
            decider,
            docker_access: match docker {
                DockerAccess::Unknown => "not checked yet".into(),
                DockerAccess::Ok => "ok".into(),
                DockerAccess::ReadOnly(why) => format!("read-only: {why}"),
                DockerAccess::Missing(why) => format!("missing: {why}"),
            },
            dry_run: s.dry_run,
            docker_events: s.docker_events,
            webhook_open: s.webhook_open,
            busy: engine.busy(),
            warnings: s.warnings.as_ref().clone(),
        },
        services,
        escalations,
        window,
        incidents,
    }
}

/// The escalations (newest first) that still stand: the newest of each replica, and
/// - a give-up (restart budget spent, crash on start) while a replica it names does not serve:
///   the agent has stopped acting, so a human must;
/// - any other (a recurrence, a failure outside the agent's reach) within the escalation window,
///   as the agent's own history remembers it.
pub fn open_escalations(
    newest_first: &[Incident],
    serving: &dyn Fn(&str) -> Option<bool>,
    now: DateTime<Utc>,
    window: Duration,
) -> Vec<OpenEscalation> {
    let since = chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut seen: HashSet<&str> = HashSet::new();
    let mut open = Vec::new();
    for incident in newest_first {
        let Some(e) = &incident.escalation else {
            continue;
        };
        // An older escalation of a replica already listed (or settled) adds nothing.
        let fresh = e.replicas.iter().any(|r| !seen.contains(r.as_str()));
        seen.extend(e.replicas.iter().map(String::as_str));
        if !fresh && !e.replicas.is_empty() {
            continue;
        }
        let replicas: Vec<(String, Option<bool>)> =
            e.replicas.iter().map(|r| (r.clone(), serving(r))).collect();
        let stands = if incident.outcome == Outcome::GaveUp {
            replicas.iter().any(|(_, up)| *up != Some(true))
        } else {
            incident.started_at >= since
        };
        if stands {
            open.push(OpenEscalation {
                incident: incident.id.clone(),
                at: incident.started_at,
                reason: e.reason,
                detail: e.detail.clone(),
                count: e.count,
                replicas,
            });
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::Escalation;

    fn escalated(
        id: &str,
        minutes_ago: i64,
        outcome: Outcome,
        reason: EscalationReason,
        replica: &str,
    ) -> Incident {
        let mut i = crate::incidents::sample_incident(id);
        i.started_at = Utc::now() - chrono::Duration::minutes(minutes_ago);
        i.run_started_at = i.started_at;
        i.resolved_at = None;
        i.mttr_seconds = None;
        i.outcome = outcome;
        i.escalation = Some(Escalation {
            reason,
            detail: format!("{replica}: {}", reason.as_str()),
            replicas: vec![replica.to_string()],
            count: 3,
            figures: None,
        });
        i
    }

    #[test]
    fn give_ups_stand_while_the_replica_is_down_recurrences_for_the_window() {
        let window = Duration::from_secs(600);
        let now = Utc::now();
        let incidents = vec![
            escalated(
                "i4",
                1,
                Outcome::Healed,
                EscalationReason::Recurrence,
                "p-webapp-1",
            ),
            escalated(
                "i3",
                2,
                Outcome::GaveUp,
                EscalationReason::BudgetSpent,
                "p-webapp-2",
            ),
            escalated(
                "i2",
                3,
                Outcome::GaveUp,
                EscalationReason::CrashOnStart,
                "p-webapp-3",
            ),
            // Older than the window: a recurrence long past.
            escalated(
                "i1",
                30,
                Outcome::Healed,
                EscalationReason::Recurrence,
                "p-webapp-4",
            ),
            // Superseded by i4 for the same replica.
            escalated(
                "i0",
                4,
                Outcome::Healed,
                EscalationReason::Recurrence,
                "p-webapp-1",
            ),
        ];
        let serving = |name: &str| match name {
            "p-webapp-2" => Some(false),
            "p-webapp-3" => Some(true),
            _ => None,
        };
        let open = open_escalations(&incidents, &serving, now, window);
        let ids: Vec<&str> = open.iter().map(|e| e.incident.as_str()).collect();
        // i3: still down; i2: serves again (someone fixed it); i1: window passed.
        assert_eq!(ids, ["i4", "i3"]);
        assert_eq!(open[1].replicas, [("p-webapp-2".to_string(), Some(false))]);

        // Docker unreachable: a give-up cannot be shown settled, so it stands.
        let unknown = |_: &str| None;
        let open = open_escalations(&incidents, &unknown, now, window);
        let ids: Vec<&str> = open.iter().map(|e| e.incident.as_str()).collect();
        assert_eq!(ids, ["i4", "i3", "i2"]);
    }
}
