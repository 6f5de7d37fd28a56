//! From triggers to a decision: observe the service, ask the policy about each replica that
//! needs an action, and either claim the actionable ones for a run, or settle without one
//! (nothing to do, given up, notify only, a failure in front of the replicas), recorded once.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use chrono::Utc;
use tracing::Instrument;

use super::run::{Draft, RunSpec};
use super::Engine;
use crate::diagnosis::{observe, Depth, Observation, Observed};
use crate::incidents::{
    ActionKind, ActionLevel, Escalation, EscalationReason, FailureClass, Mode, Outcome,
    TriggerRecord,
};
use crate::policy::{self, main_class, Actor, Verdict};
use crate::tools::{escalation_detail, give_up_count};

/// How a look at a service ends when no run is needed.
pub(super) struct Settled {
    pub outcome: Outcome,
    pub class: FailureClass,
    pub summary: String,
    pub escalation: Option<Escalation>,
    pub scope_note: Option<String>,
}

enum Plan {
    Run(Vec<String>),
    Settle(Settled),
    /// Replicas need healing but other runs have them: nothing to record.
    Busy,
    /// The service's action level is off.
    Off,
}

/// Most out-of-scope alert names remembered for de-duplication.
const MAX_OUT_OF_SCOPE_SEEN: usize = 256;

impl Engine {
    /// Observes `service` and starts a run or settles, for `triggers`.
    pub(super) async fn start(&self, service: &str, mut triggers: Vec<TriggerRecord>) {
        triggers.sort_by_key(|t| t.at);
        let id = self.next_id(service);
        let span = tracing::info_span!("incident", id = %id, service = %service);
        self.start_inner(id, service, triggers)
            .instrument(span)
            .await
    }

    async fn start_inner(&self, id: String, service: &str, triggers: Vec<TriggerRecord>) {
        let ctx = &self.inner.ctx;
        let project = self.inner.scope.project().to_string();
        let draft = Draft::new(
            &id,
            service,
            &project,
            triggers,
            self.inner.strategy.mode(),
            ctx.clock.now(),
        );
        let obs = match observe(ctx, &project, service, Depth::FULL).await {
            Ok(obs) => obs,
            Err(e) => {
                tracing::warn!(error = %e, "could not observe the service; retrying later");
                let settled = Settled {
                    outcome: Outcome::Failed,
                    class: FailureClass::NotDown,
                    summary: format!("could not observe the replicas of {service}: {e}"),
                    escalation: None,
                    scope_note: None,
                };
                let digest = fingerprint(&settled, None);
                self.settle(draft, settled, digest).await;
                self.requeue(service);
                return;
            }
        };
        match self.plan(&id, service, &obs) {
            Plan::Off => {
                tracing::debug!("action level off: the service is left alone");
            }
            Plan::Busy => {
                tracing::debug!("every replica that needs healing is being healed by another run");
            }
            Plan::Settle(settled) => {
                let digest = fingerprint(&settled, Some(&obs));
                let mut draft = draft;
                draft.observed(&obs);
                self.settle(draft, settled, digest).await;
                self.settle_backoff(service);
            }
            Plan::Run(claimed) => {
                tracing::info!(claimed = ?claimed, "replicas need healing");
                let mut draft = draft;
                draft.observed(&obs);
                self.spawn_run(RunSpec {
                    draft,
                    observation: obs,
                    claimed,
                });
            }
        }
    }

    /// Decides, per replica that needs an action, with the policy the tools apply.
    fn plan(&self, id: &str, service: &str, obs: &Observation) -> Plan {
        if obs.level == ActionLevel::Off {
            return Plan::Off;
        }
        let ctx = &self.inner.ctx;
        let now = ctx.clock.now();
        let needing: Vec<&Observed> = obs
            .replicas
            .iter()
            .filter(|o| o.diagnosis.action != ActionKind::None)
            .collect();
        let mut state = self.state();
        let (mut actionable, mut given_up, mut notify_only, mut busy) =
            (Vec::new(), Vec::new(), Vec::new(), 0usize);
        for o in needing {
            let name = &o.diagnosis.name;
            if state.claims.contains_key(name) {
                busy += 1;
                continue;
            }
            if obs.level == ActionLevel::Notify {
                notify_only.push(o);
                continue;
            }
            let healthy_for = o
                .state
                .healthy_for(now, o.state.has_healthcheck())
                .to_std()
                .unwrap_or_default();
            ctx.budget.reset_if_stable(name, healthy_for);
            let crash_tries = ctx.history.count(name, FailureClass::CrashedOnStart, now);
            let budget = ctx.budget.check(name, now);
            let verdict = policy::check(&policy::Request {
                actor: Actor::Runbook,
                diagnosis: &o.diagnosis,
                level: obs.level,
                claimed: true,
                already_acted: false,
                requests: 1,
                replicas: 1,
                crash_tries,
                max_crash_tries: ctx.history.policy().crash_on_start_tries,
                budget: budget.clone(),
            });
            match verdict {
                Verdict::Allow { .. } => actionable.push(name.clone()),
                Verdict::Deny {
                    give_up: Some(why),
                    reason,
                } => given_up.push((o, why, reason, give_up_count(why, crash_tries, &budget))),
                Verdict::Deny { reason, .. } | Verdict::Stop(reason) => {
                    tracing::warn!(replica = %name, %reason, "needs healing, but the policy says no")
                }
            }
        }
        if !actionable.is_empty() {
            for name in &actionable {
                state.claims.insert(name.clone(), id.to_string());
            }
            let slot = state.services.entry(service.to_string()).or_default();
            slot.running += 1;
            slot.last_settled = None;
            return Plan::Run(actionable);
        }
        drop(state);
        if !notify_only.is_empty() {
            let names: Vec<&str> = notify_only
                .iter()
                .map(|o| o.diagnosis.name.as_str())
                .collect();
            let class = main_class(notify_only.iter().map(|o| &o.diagnosis));
            return Plan::Settle(Settled {
                outcome: Outcome::Notified,
                class,
                summary: format!(
                    "{} need(s) healing ({}), but the service's action level is notify: diagnosed and notified, nothing touched",
                    names.join(", "),
                    class.as_str()
                ),
                escalation: None,
                scope_note: None,
            });
        }
        if !given_up.is_empty() {
            let (first, why, _, count) = &given_up[0];
            let details: Vec<String> = given_up
                .iter()
                .map(|(o, why, ..)| escalation_detail(&o.diagnosis, *why))
                .collect();
            let replicas: Vec<String> = given_up
                .iter()
                .map(|(o, ..)| o.diagnosis.name.clone())
                .collect();
            for r in &replicas {
                ctx.history.mark_escalated(r, now);
            }
            return Plan::Settle(Settled {
                outcome: Outcome::GaveUp,
                class: first.diagnosis.class,
                summary: format!("gave up on {}: {}", replicas.join(", "), given_up[0].2),
                escalation: Some(Escalation {
                    reason: *why,
                    detail: details.join("\n"),
                    count: (*count).max(1),
                    replicas,
                }),
                scope_note: None,
            });
        }
        if busy > 0 {
            return Plan::Busy;
        }
        let all_serving = obs
            .replicas
            .iter()
            .all(|o| o.diagnosis.class == FailureClass::NotDown);
        if all_serving && !obs.replicas.is_empty() && obs.service_failing() {
            let url = obs
                .service_probe
                .as_ref()
                .and_then(|p| p.url.clone())
                .unwrap_or_default();
            let why = obs
                .service_probe
                .as_ref()
                .and_then(|p| p.error.clone().or(p.status.map(|s| format!("HTTP {s}"))))
                .unwrap_or_default();
            let note = format!(
                "every replica of {service} runs and answers its own probe, but {url} fails ({why}): the fault is in front of the replicas (the load balancer or the network), outside this agent's scope; its owner must look"
            );
            return Plan::Settle(Settled {
                outcome: Outcome::NoAction,
                class: FailureClass::OutOfScope,
                summary: format!(
                    "{service}'s replicas are fine; {url} fails: not this agent's to fix"
                ),
                escalation: Some(Escalation {
                    reason: EscalationReason::OutOfScope,
                    detail: note.clone(),
                    replicas: Vec::new(),
                    count: 1,
                }),
                scope_note: Some(note),
            });
        }
        let class = main_class(obs.replicas.iter().map(|o| &o.diagnosis));
        let stopped: Vec<&str> = obs
            .replicas
            .iter()
            .filter(|o| o.diagnosis.class == FailureClass::StoppedOnPurpose)
            .map(|o| o.diagnosis.name.as_str())
            .collect();
        let serving = obs.replicas.iter().filter(|o| o.state.is_serving()).count();
        let summary = if stopped.is_empty() {
            format!(
                "nothing to do: {serving} of {} replicas of {service} serve",
                obs.replicas.len()
            )
        } else {
            format!(
                "nothing to do: {} stopped on purpose (left stopped); {serving} of {} replicas serve",
                stopped.join(", "),
                obs.replicas.len()
            )
        };
        Plan::Settle(Settled {
            outcome: Outcome::NoAction,
            class,
            summary,
            escalation: None,
            scope_note: None,
        })
    }

    /// Records a settled look unless it is the agent's own resync finding nothing, or the same
    /// state as the last one recorded for the service.
    async fn settle(&self, draft: Draft, settled: Settled, digest: u64) {
        let external = draft.triggers.iter().any(|t| t.kind.is_external());
        let worth =
            external || settled.outcome != Outcome::NoAction || settled.escalation.is_some();
        if !worth {
            return;
        }
        {
            let mut state = self.state();
            let slot = state.services.entry(draft.service.clone()).or_default();
            if slot.last_settled == Some(digest) {
                self.inner
                    .metrics
                    .deduplicated
                    .with_label_values(&[draft.service.as_str()])
                    .inc();
                tracing::debug!("same state as the last record; not recorded again");
                return;
            }
            slot.last_settled = Some(digest);
        }
        let mut draft = draft;
        if draft.mode != Mode::Runbook {
            // No run: nobody but the engine decided.
            draft.mode = Mode::Runbook;
        }
        let incident = draft.close(
            settled.outcome,
            settled.class,
            None,
            settled.summary,
            Vec::new(),
            settled.escalation,
            settled.scope_note,
        );
        self.record(incident).await;
    }

    /// Records an alert about something this agent does not heal (another service or project),
    /// once per alert and service: whose problem it is, and that nothing was touched.
    pub async fn out_of_scope(&self, named: &str, trigger: TriggerRecord, why: String) {
        let key = {
            let mut h = DefaultHasher::new();
            (named, &trigger.name, &why).hash(&mut h);
            h.finish()
        };
        {
            let mut state = self.state();
            if !state.accepting || state.out_of_scope_seen.contains(&key) {
                return;
            }
            if state.out_of_scope_seen.len() >= MAX_OUT_OF_SCOPE_SEEN {
                state.out_of_scope_seen.pop_front();
            }
            state.out_of_scope_seen.push_back(key);
        }
        let id = self.next_id("out-of-scope");
        let project = self.inner.scope.project().to_string();
        let note = format!(
            "{why}; this agent heals only {} in project {project:?}: route this alert to the owner of {named:?}",
            self.inner.scope.services().collect::<Vec<_>>().join(", ")
        );
        let draft = Draft::new(
            &id,
            named,
            &project,
            vec![trigger],
            Mode::Runbook,
            Utc::now(),
        );
        let incident = draft.close(
            Outcome::NoAction,
            FailureClass::OutOfScope,
            None,
            format!("out of scope: {named:?} is not healed by this agent; nothing touched"),
            Vec::new(),
            None,
            Some(note),
        );
        self.record(incident).await;
    }
}

/// What identifies a settled state: the outcome, and per replica its class and life.
fn fingerprint(s: &Settled, obs: Option<&Observation>) -> u64 {
    let mut h = DefaultHasher::new();
    (s.outcome, s.class, s.escalation.as_ref().map(|e| e.reason)).hash(&mut h);
    if let Some(obs) = obs {
        for o in &obs.replicas {
            (
                &o.diagnosis.name,
                o.diagnosis.class,
                &o.diagnosis.status,
                o.state.started_at,
                o.state.finished_at,
                o.state.exit_code,
            )
                .hash(&mut h);
        }
        obs.service_failing().hash(&mut h);
    } else {
        s.summary.hash(&mut h);
    }
    h.finish()
}
