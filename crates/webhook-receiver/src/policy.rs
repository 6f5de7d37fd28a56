//! The one check before every action, whoever asks (the runbook, the model, the engine deciding
//! whether a run is worth starting): allow, deny with a reason the caller sees, or stop the run.
//!
//! Scope (is this a replica of the service at all?) is settled before this, by resolving the name
//! among the service's live replicas; this decides whether acting on that replica is right now.
//! The model's limits and the runbook's are separate, so that a confused model can never spend
//! what the fallback needs: the promise "never worse than no LLM" holds by construction.

use std::time::Duration;

use crate::budget::BudgetDecision;
use crate::incidents::{ActionKind, ActionLevel, EscalationReason, FailureClass, ReplicaDiagnosis};

/// Who asks for an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Runbook,
    Llm,
    /// The engine itself (verification, bookkeeping).
    Agent,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Runbook => "runbook",
            Actor::Llm => "llm",
            Actor::Agent => "agent",
        }
    }
}

/// Restart requests (denied ones included) the model may make per replica of the run before the
/// run is stopped and the runbook takes over.
pub const MODEL_REQUESTS_PER_REPLICA: usize = 3;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Act (`action`) after waiting `wait` (restart backoff); `attempt` counts within the window.
    Allow {
        action: ActionKind,
        wait: Duration,
        attempt: u32,
    },
    /// Not this replica, not now. `give_up` when the agent stops acting on it for good (until
    /// the window reopens or an operator resets it).
    Deny {
        reason: String,
        give_up: Option<EscalationReason>,
    },
    /// No further actions in this run (the model is going in circles).
    Stop(String),
}

/// The facts one decision needs, gathered by the caller from live state and the run's record.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub actor: Actor,
    /// The replica's diagnosis from live state, taken just before the action.
    pub diagnosis: &'a ReplicaDiagnosis,
    pub level: ActionLevel,
    /// The replica belongs to this run (not being healed by another run at the same time).
    pub claimed: bool,
    /// An action on it was already confirmed in this run.
    pub already_acted: bool,
    /// Restart requests this actor made in this run, this one included.
    pub requests: usize,
    /// Replicas in the run, for the model's cap.
    pub replicas: usize,
    /// Agent starts of this replica for a crash on start within the escalation window.
    pub crash_tries: u32,
    pub max_crash_tries: u32,
    pub budget: BudgetDecision,
}

/// The model's cap on restart requests in a run, checked before anything else (a request for
/// a name that does not even resolve counts too).
pub fn request_cap(actor: Actor, requests: usize, replicas: usize) -> Option<Verdict> {
    (actor == Actor::Llm && requests > MODEL_REQUESTS_PER_REPLICA * replicas.max(1)).then(|| {
        Verdict::Stop(format!(
            "{requests} restart requests in one run is too many; the runbook takes over"
        ))
    })
}

pub fn check(r: &Request<'_>) -> Verdict {
    let d = r.diagnosis;
    if let Some(stop) = request_cap(r.actor, r.requests, r.replicas) {
        return stop;
    }
    let deny = |reason: String| Verdict::Deny {
        reason,
        give_up: None,
    };
    match r.level {
        ActionLevel::Auto => {}
        ActionLevel::Notify => {
            return deny(format!(
                "the service's action level is notify ({}=notify): the agent diagnoses and notifies, it does not act",
                ActionLevel::LABEL
            ))
        }
        ActionLevel::Off => {
            return deny(format!(
                "the service's action level is off ({}=off): the agent leaves it alone",
                ActionLevel::LABEL
            ))
        }
    }
    if d.action == ActionKind::None {
        return deny(format!("{} is {}: not acting on it", d.name, d.reason));
    }
    if !r.claimed {
        return deny(format!(
            "{} is being healed by another run right now; this run leaves it to that one",
            d.name
        ));
    }
    if r.already_acted {
        return deny(format!(
            "{} was already acted on in this run; its verification decides what happens next",
            d.name
        ));
    }
    if d.class == FailureClass::CrashedOnStart && r.crash_tries >= r.max_crash_tries {
        return Verdict::Deny {
            reason: format!(
                "{} crashes on every start ({} starts already did not help): restarting it is not the fix; escalated to a human",
                d.name, r.crash_tries
            ),
            give_up: Some(EscalationReason::CrashOnStart),
        };
    }
    match r.budget {
        BudgetDecision::Exhausted { attempts } => Verdict::Deny {
            reason: format!(
                "restart budget spent for {}: {attempts} restarts within the window; it is left alone (crash loop) until the window reopens or an operator resets it",
                d.name
            ),
            give_up: Some(EscalationReason::BudgetSpent),
        },
        BudgetDecision::Allowed { wait, attempt } => Verdict::Allow {
            action: d.action,
            wait,
            attempt,
        },
    }
}

/// The class a set of diagnoses is about: the first class that needs an action, else the most
/// telling of the rest.
pub fn main_class<'a>(diagnoses: impl IntoIterator<Item = &'a ReplicaDiagnosis>) -> FailureClass {
    let all: Vec<&ReplicaDiagnosis> = diagnoses.into_iter().collect();
    all.iter()
        .find(|d| d.action != ActionKind::None)
        .or_else(|| {
            all.iter()
                .find(|d| d.class == FailureClass::StoppedOnPurpose)
        })
        .map(|d| d.class)
        .unwrap_or(FailureClass::NotDown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(class: FailureClass, action: ActionKind) -> ReplicaDiagnosis {
        ReplicaDiagnosis {
            name: "p-webapp-1".into(),
            status: "exited".into(),
            exit_code: Some(1),
            oom_killed: false,
            health: None,
            restart_count: 0,
            started_at: None,
            finished_at: None,
            uptime_seconds: None,
            healthy_seconds: None,
            memory_usage_bytes: None,
            memory_limit_bytes: None,
            needs_healing: action != ActionKind::None,
            class,
            action,
            reason: "exited".into(),
            probe: None,
            health_output: None,
            logs_tail: vec![],
        }
    }

    fn request(d: &ReplicaDiagnosis) -> Request<'_> {
        Request {
            actor: Actor::Runbook,
            diagnosis: d,
            level: ActionLevel::Auto,
            claimed: true,
            already_acted: false,
            requests: 1,
            replicas: 3,
            crash_tries: 0,
            max_crash_tries: 2,
            budget: BudgetDecision::Allowed {
                wait: Duration::ZERO,
                attempt: 1,
            },
        }
    }

    fn is_deny(v: &Verdict) -> bool {
        matches!(v, Verdict::Deny { .. })
    }

    #[test]
    fn allows_the_class_action_and_nothing_else() {
        let d = diag(FailureClass::OomKilled, ActionKind::Start);
        assert!(matches!(
            check(&request(&d)),
            Verdict::Allow {
                action: ActionKind::Start,
                ..
            }
        ));
        let healthy = diag(FailureClass::NotDown, ActionKind::None);
        assert!(is_deny(&check(&request(&healthy))));
        let stopped = diag(FailureClass::StoppedOnPurpose, ActionKind::None);
        assert!(is_deny(&check(&request(&stopped))));
    }

    #[test]
    fn level_claim_and_repeats_deny() {
        let d = diag(FailureClass::Killed, ActionKind::Start);
        for level in [ActionLevel::Notify, ActionLevel::Off] {
            assert!(is_deny(&check(&Request {
                level,
                ..request(&d)
            })));
        }
        assert!(is_deny(&check(&Request {
            claimed: false,
            ..request(&d)
        })));
        assert!(is_deny(&check(&Request {
            already_acted: true,
            ..request(&d)
        })));
    }

    #[test]
    fn crash_loops_and_spent_budgets_give_up() {
        let d = diag(FailureClass::CrashedOnStart, ActionKind::Start);
        assert!(matches!(
            check(&Request {
                crash_tries: 1,
                ..request(&d)
            }),
            Verdict::Allow { .. }
        ));
        assert!(matches!(
            check(&Request {
                crash_tries: 2,
                ..request(&d)
            }),
            Verdict::Deny {
                give_up: Some(EscalationReason::CrashOnStart),
                ..
            }
        ));
        let k = diag(FailureClass::Killed, ActionKind::Start);
        assert!(matches!(
            check(&Request {
                budget: BudgetDecision::Exhausted { attempts: 5 },
                ..request(&k)
            }),
            Verdict::Deny {
                give_up: Some(EscalationReason::BudgetSpent),
                ..
            }
        ));
    }

    #[test]
    fn only_the_model_has_a_request_cap() {
        let d = diag(FailureClass::Killed, ActionKind::Start);
        let many = Request {
            requests: 10,
            replicas: 3,
            ..request(&d)
        };
        assert!(matches!(
            check(&Request {
                actor: Actor::Llm,
                ..many.clone()
            }),
            Verdict::Stop(_)
        ));
        assert!(
            matches!(check(&many), Verdict::Allow { .. }),
            "the runbook's own limit is one action per replica"
        );
    }
}
