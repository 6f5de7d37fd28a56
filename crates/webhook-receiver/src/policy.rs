//! The one decision before every action, whoever asks (the engine planning a run, the runbook,
//! the model): act (after a backoff), deny with a reason the caller sees, give up (escalate), or
//! stop the run. A pure function of one value, [`Facts`], which the caller gathers once
//! ([`crate::ledger::Ledger::facts`] for what the agent remembers of the replica, the run's record
//! for the rest); what happens afterwards is recorded in one place, the ledger.
//!
//! The floor it keeps (docs/agent.md): a replica that served before it died is never given up
//! on. Only what a restart cannot fix is: a replica that never became healthy after
//! `CRASH_ON_START_TRIES` actions (a crash on start, or a replica that never passes its
//! healthcheck), and an action Docker refuses (decided where the refusal is seen, in the tools).
//! A replica given up on is left alone, quietly, until its state changes or its next quiet retry.
//!
//! The model's limits and the runbook's are separate, so that a confused model can never spend
//! what the fallback needs: "never worse than no LLM" holds by construction.

pub mod recycle;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::incidents::{ActionKind, ActionLevel, EscalationReason, FailureClass, ReplicaDiagnosis};

/// Who asks for an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Runbook,
    Llm,
    /// The engine itself (planning, verification, bookkeeping).
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

/// What the agent remembers of a replica (gathered by the ledger).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaFacts {
    /// The agent's actions on it since it last served.
    pub tries: u32,
    pub max_tries: u32,
    /// The restart backoff: wait this long first; `attempt` counts the current streak.
    pub wait: Duration,
    pub attempt: u32,
    /// Given up on this life of the replica (escalated): left alone until `retry_at`, when one
    /// quiet attempt is made.
    pub parked: Option<Parked>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parked {
    pub reason: EscalationReason,
    pub retry_at: DateTime<Utc>,
    pub retry_due: bool,
}

/// What the run knows of the replica (from its claim and its record).
#[derive(Debug, Clone, PartialEq)]
pub struct RunFacts {
    /// The replica belongs to this run (no other run acts on it at the same time).
    pub claimed: bool,
    /// Another call of this run is acting on it right now (a parallel or aliased call).
    pub in_flight: bool,
    /// An action on it was already confirmed in this run.
    pub already_acted: bool,
    /// Restart requests this actor made in this run, this one included.
    pub requests: usize,
    /// Replicas in the run, for the model's cap.
    pub replicas: usize,
}

impl RunFacts {
    /// The engine deciding whether a run is worth starting for a replica nobody holds.
    pub fn planning(claimed_elsewhere: bool) -> Self {
        RunFacts {
            claimed: !claimed_elsewhere,
            in_flight: false,
            already_acted: false,
            requests: 1,
            replicas: 1,
        }
    }
}

/// Everything one decision needs, gathered once, from live state just before it.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub actor: Actor,
    pub diagnosis: &'a ReplicaDiagnosis,
    /// The service's action level (label `healstack.action`).
    pub level: ActionLevel,
    pub replica: ReplicaFacts,
    pub run: RunFacts,
}

/// Why an action is not taken now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The service's action level is `notify` or `off`.
    Level(ActionLevel),
    /// Its class needs no action (serving, starting, stopped on purpose...).
    NothingToDo,
    /// Being acted on by another run, or by another call of this one.
    Busy,
    AlreadyActed,
    /// Given up on and escalated; the agent is quiet about it until its state changes.
    GivenUp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Act (`action`) after waiting `wait`; `attempt` counts the backoff streak.
    Act {
        action: ActionKind,
        wait: Duration,
        attempt: u32,
    },
    /// Not this replica, not now.
    Deny { reason: String, why: Denial },
    /// A restart cannot fix it: stop acting on it, and tell people (once).
    GiveUp {
        reason: EscalationReason,
        detail: String,
    },
    /// No further actions in this run (the model is going in circles).
    Stop(String),
}

/// The model's cap on restart requests in a run, checked before anything else (a request for a
/// name that does not even resolve counts too).
pub fn request_cap(actor: Actor, requests: usize, replicas: usize) -> Option<Decision> {
    (actor == Actor::Llm && requests > MODEL_REQUESTS_PER_REPLICA * replicas.max(1)).then(|| {
        Decision::Stop(format!(
            "{requests} restart requests in one run is too many; the runbook takes over"
        ))
    })
}

/// Whether the agent may give up on this replica once its tries are spent: a life that never
/// served, failing in a way that is its own doing (it crashed on start, it never passed its
/// healthcheck, it never answered). Deaths by a signal, an OOM kill or an unattributed stop are
/// not: Docker's `restart: always` restarts them for ever, and so does the agent. A paused
/// replica is unpaused whatever its past.
pub fn may_give_up(d: &ReplicaDiagnosis) -> bool {
    !d.served
        && match d.class {
            FailureClass::CrashedOnStart | FailureClass::Unhealthy => true,
            FailureClass::Hung => d.action == ActionKind::Restart,
            _ => false,
        }
}

pub fn decide(f: &Facts<'_>) -> Decision {
    let d = f.diagnosis;
    if let Some(stop) = request_cap(f.actor, f.run.requests, f.run.replicas) {
        return stop;
    }
    let deny = |why: Denial, reason: String| Decision::Deny { reason, why };
    match f.level {
        ActionLevel::Auto => {}
        ActionLevel::Notify => {
            return deny(
                Denial::Level(ActionLevel::Notify),
                format!(
                    "the service's action level is notify ({}=notify): the agent diagnoses and notifies, it does not act",
                    ActionLevel::LABEL
                ),
            )
        }
        ActionLevel::Off => {
            return deny(
                Denial::Level(ActionLevel::Off),
                format!(
                    "the service's action level is off ({}=off): the agent leaves it alone",
                    ActionLevel::LABEL
                ),
            )
        }
    }
    if d.action == ActionKind::None {
        return deny(
            Denial::NothingToDo,
            format!("{} is {}: not acting on it", d.name, d.reason),
        );
    }
    if !f.run.claimed {
        return deny(
            Denial::Busy,
            format!(
                "{} is already being acted on by another run; this run leaves it to that one",
                d.name
            ),
        );
    }
    if f.run.in_flight {
        return deny(
            Denial::Busy,
            format!(
                "{} is already being acted on (another call of this run, maybe by another of its names)",
                d.name
            ),
        );
    }
    if f.run.already_acted {
        return deny(
            Denial::AlreadyActed,
            format!(
                "{} was already acted on in this run; its verification decides what happens next",
                d.name
            ),
        );
    }
    if let Some(p) = &f.replica.parked {
        if !p.retry_due {
            return deny(
                Denial::GivenUp,
                format!(
                    "{} was given up on ({}) and escalated; the agent leaves it alone until it changes (next quiet try at {})",
                    d.name,
                    p.reason.as_str(),
                    p.retry_at.format("%H:%M:%S")
                ),
            );
        }
        // One quiet try, whatever the tries so far: the cause may be gone (a port freed, a
        // dependency back), as Docker's own restart policy would find out.
        return Decision::Act {
            action: d.action,
            wait: Duration::ZERO,
            attempt: f.replica.attempt,
        };
    }
    if may_give_up(d) && f.replica.tries >= f.replica.max_tries {
        let detail = match d.class {
            FailureClass::CrashedOnStart => format!(
                "{} crashes on every start ({} starts by the agent did not help): restarting it is not the fix",
                d.name, f.replica.tries
            ),
            _ => format!(
                "{} never became healthy after {} restarts by the agent ({}): restarting it is not the fix",
                d.name, f.replica.tries, d.reason
            ),
        };
        return Decision::GiveUp {
            reason: if d.class == FailureClass::CrashedOnStart {
                EscalationReason::CrashOnStart
            } else {
                EscalationReason::NeverHealthy
            },
            detail,
        };
    }
    Decision::Act {
        action: d.action,
        wait: f.replica.wait,
        attempt: f.replica.attempt,
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

    fn diag(class: FailureClass, action: ActionKind, served: bool) -> ReplicaDiagnosis {
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
            served,
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

    fn facts(d: &ReplicaDiagnosis) -> Facts<'_> {
        Facts {
            actor: Actor::Runbook,
            diagnosis: d,
            level: ActionLevel::Auto,
            replica: ReplicaFacts {
                tries: 0,
                max_tries: 2,
                wait: Duration::ZERO,
                attempt: 1,
                parked: None,
            },
            run: RunFacts {
                claimed: true,
                in_flight: false,
                already_acted: false,
                requests: 1,
                replicas: 3,
            },
        }
    }

    fn denial(dec: Decision) -> Option<Denial> {
        match dec {
            Decision::Deny { why, .. } => Some(why),
            _ => None,
        }
    }

    #[test]
    fn allows_the_class_action_and_nothing_else() {
        let d = diag(FailureClass::OomKilled, ActionKind::Start, true);
        assert!(matches!(
            decide(&facts(&d)),
            Decision::Act {
                action: ActionKind::Start,
                ..
            }
        ));
        let healthy = diag(FailureClass::NotDown, ActionKind::None, true);
        assert_eq!(denial(decide(&facts(&healthy))), Some(Denial::NothingToDo));
        let stopped = diag(FailureClass::StoppedOnPurpose, ActionKind::None, true);
        assert_eq!(denial(decide(&facts(&stopped))), Some(Denial::NothingToDo));
    }

    #[test]
    fn level_claim_in_flight_and_repeats_deny() {
        let d = diag(FailureClass::Killed, ActionKind::Start, true);
        for level in [ActionLevel::Notify, ActionLevel::Off] {
            let mut f = facts(&d);
            f.level = level;
            assert_eq!(denial(decide(&f)), Some(Denial::Level(level)));
        }
        let mut f = facts(&d);
        f.run.claimed = false;
        assert_eq!(denial(decide(&f)), Some(Denial::Busy));
        let mut f = facts(&d);
        f.run.in_flight = true;
        let dec = decide(&f);
        assert!(
            matches!(&dec, Decision::Deny { reason, why: Denial::Busy } if reason.contains("already being acted on")),
            "{dec:?}"
        );
        let mut f = facts(&d);
        f.run.already_acted = true;
        assert_eq!(denial(decide(&f)), Some(Denial::AlreadyActed));
    }

    #[test]
    fn a_replica_that_served_is_never_given_up_on() {
        for class in [
            FailureClass::OomKilled,
            FailureClass::Killed,
            FailureClass::Crashed,
            FailureClass::Unhealthy,
        ] {
            let d = diag(class, ActionKind::Start, true);
            let mut f = facts(&d);
            f.replica.tries = 1000;
            f.replica.attempt = 1001;
            f.replica.wait = Duration::from_secs(2);
            assert_eq!(
                decide(&f),
                Decision::Act {
                    action: ActionKind::Start,
                    wait: Duration::from_secs(2),
                    attempt: 1001
                },
                "{class:?}"
            );
        }
        // Deaths that are not the replica's doing, served or not: restarted like restart: always.
        for class in [FailureClass::OomKilled, FailureClass::Killed] {
            let d = diag(class, ActionKind::Start, false);
            let mut f = facts(&d);
            f.replica.tries = 1000;
            assert!(matches!(decide(&f), Decision::Act { .. }), "{class:?}");
        }
    }

    #[test]
    fn what_never_served_is_given_up_after_its_tries() {
        let d = diag(FailureClass::CrashedOnStart, ActionKind::Start, false);
        let mut f = facts(&d);
        f.replica.tries = 1;
        assert!(matches!(decide(&f), Decision::Act { .. }));
        f.replica.tries = 2;
        assert!(matches!(
            decide(&f),
            Decision::GiveUp {
                reason: EscalationReason::CrashOnStart,
                ..
            }
        ));
        let sick = diag(FailureClass::Unhealthy, ActionKind::Restart, false);
        let mut f = facts(&sick);
        f.replica.tries = 2;
        assert!(matches!(
            decide(&f),
            Decision::GiveUp {
                reason: EscalationReason::NeverHealthy,
                ..
            }
        ));
        let paused = diag(FailureClass::Hung, ActionKind::Unpause, false);
        let mut f = facts(&paused);
        f.replica.tries = 2;
        assert!(
            matches!(decide(&f), Decision::Act { .. }),
            "unpaused whatever its past"
        );
    }

    #[test]
    fn a_replica_given_up_on_is_left_alone_until_its_quiet_try() {
        let d = diag(FailureClass::CrashedOnStart, ActionKind::Start, false);
        let mut f = facts(&d);
        f.replica.tries = 5;
        f.replica.parked = Some(Parked {
            reason: EscalationReason::CrashOnStart,
            retry_at: Utc::now(),
            retry_due: false,
        });
        assert_eq!(denial(decide(&f)), Some(Denial::GivenUp));
        f.replica.parked.as_mut().unwrap().retry_due = true;
        assert!(matches!(decide(&f), Decision::Act { .. }));
    }

    #[test]
    fn only_the_model_has_a_request_cap() {
        let d = diag(FailureClass::Killed, ActionKind::Start, true);
        let mut many = facts(&d);
        many.run.requests = 10;
        assert!(matches!(decide(&many), Decision::Act { .. }));
        many.actor = Actor::Llm;
        assert!(matches!(decide(&many), Decision::Stop(_)));
    }
}
