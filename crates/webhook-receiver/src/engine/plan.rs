//! From triggers to a decision: observe the service, ask the policy about every replica on
//! facts gathered once, and either claim the actionable ones (by container id) for a run, or
//! settle without one (nothing to do, given up, notify only, a failure in front of the
//! replicas), recorded once.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::run::{Draft, RunSpec};
use super::Engine;
use crate::diagnosis::{observe, Depth, Observation, Observed};
use crate::incidents::{
    ActionKind, Escalation, EscalationReason, FailureClass, Mode, Outcome, TriggerRecord,
};
use crate::ledger::Life;
use crate::policy::{self, main_class, Actor, Decision, Denial, Facts, RunFacts};
use crate::runtime::ContainerRef;
use crate::tools::{escalation_detail, GaveUp};

/// How a look at a service ends when no run is needed.
pub(super) struct Settled {
    pub outcome: Outcome,
    pub class: FailureClass,
    pub summary: String,
    pub escalation: Option<Escalation>,
    pub scope_note: Option<String>,
    /// Nothing new to tell: the only replicas in trouble were given up on and escalated already.
    pub quiet: bool,
}

enum Plan {
    Run {
        claimed: Vec<ContainerRef>,
        /// Every claimed replica is a quiet try at one given up on.
        quiet: bool,
    },
    Settle(Settled),
    /// Replicas need healing but other runs have them (these run ids): the triggers join
    /// their incidents.
    Busy(Vec<String>),
    /// The service's action level is off.
    Off,
}

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
                    quiet: false,
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
            Plan::Busy(runs) => {
                tracing::debug!(runs = ?runs, "every replica that needs healing is being healed by another run; the triggers join its incident");
                self.join(service, &runs, draft.triggers);
            }
            Plan::Settle(settled) => {
                let digest = fingerprint(&settled, Some(&obs));
                let mut draft = draft;
                draft.observed(&obs);
                self.settle(draft, settled, digest).await;
                self.settle_backoff(service);
            }
            Plan::Run { claimed, quiet } => {
                let names: Vec<&str> = claimed.iter().map(|c| c.name.as_str()).collect();
                tracing::info!(claimed = ?names, quiet, "replicas need healing");
                let mut draft = draft;
                draft.observed(&obs);
                self.spawn_run(RunSpec {
                    draft,
                    observation: obs,
                    claimed,
                    quiet,
                });
            }
        }
    }

    /// Decides, for every replica, with the one policy on facts gathered once; what the look
    /// found is remembered (the ledger, the service's health, resolved escalations).
    fn plan(&self, id: &str, service: &str, obs: &Observation) -> Plan {
        let ctx = &self.inner.ctx;
        let now = ctx.clock.now();
        let let_go = ctx.ledger.observed(&obs.diagnoses());
        if !let_go.is_empty() {
            tracing::info!(replicas = ?let_go, "replicas given up on serve again");
        }
        self.close_resolved(service, obs);
        let mut state = self.state();
        let mut actionable: Vec<ContainerRef> = Vec::new();
        let mut quiet = true;
        let mut giving_up: Vec<(&Observed, GaveUp)> = Vec::new();
        let (mut notify_only, mut left_alone, mut busy, mut off) =
            (Vec::new(), Vec::new(), Vec::<String>::new(), false);
        for o in &obs.replicas {
            let d = &o.diagnosis;
            let facts = Facts {
                actor: Actor::Agent,
                diagnosis: d,
                level: obs.level,
                replica: ctx.ledger.facts(d, now),
                run: RunFacts::planning(state.claims.contains_key(&o.state.container.id)),
            };
            let retry = facts.replica.parked.as_ref().is_some_and(|p| p.retry_due);
            let tries = facts.replica.tries;
            match policy::decide(&facts) {
                Decision::Act { .. } => {
                    actionable.push(o.state.container.clone());
                    quiet &= retry;
                }
                Decision::GiveUp { reason, detail } => giving_up.push((
                    o,
                    GaveUp {
                        name: d.name.clone(),
                        life: Life::of(d),
                        reason,
                        detail: escalation_detail(d, &detail),
                        count: tries,
                    },
                )),
                Decision::Deny {
                    why: Denial::Level(crate::incidents::ActionLevel::Off),
                    ..
                } => off = true,
                Decision::Deny {
                    why: Denial::Level(_),
                    ..
                } if d.action != ActionKind::None => notify_only.push(o),
                Decision::Deny {
                    why: Denial::Busy, ..
                } => {
                    if let Some(run) = state.claims.get(&o.state.container.id) {
                        if !busy.contains(run) {
                            busy.push(run.clone());
                        }
                    }
                }
                Decision::Deny {
                    why: Denial::GivenUp,
                    reason,
                } => left_alone.push((d.name.clone(), reason)),
                Decision::Deny { .. } | Decision::Stop(_) => {}
            }
        }
        let mut given_up: Vec<String> = left_alone.iter().map(|(n, _)| n.clone()).collect();
        given_up.extend(giving_up.iter().map(|(_, g)| g.name.clone()));
        if !actionable.is_empty() {
            for c in &actionable {
                state.claims.insert(c.id.clone(), id.to_string());
            }
            let slot = state.services.entry(service.to_string()).or_default();
            slot.running += 1;
            // A run changes the state, so the same settled state later is news; a dry run
            // changes nothing.
            if !ctx.dry_run {
                slot.last_settled = None;
            }
        }
        drop(state);
        self.note_look(service, obs, &given_up);
        if off {
            return Plan::Off;
        }
        if !actionable.is_empty() {
            return Plan::Run {
                claimed: actionable,
                quiet,
            };
        }
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
                quiet: false,
            });
        }
        if !giving_up.is_empty() {
            let class = giving_up[0].0.diagnosis.class;
            let list: Vec<GaveUp> = giving_up.into_iter().map(|(_, g)| g).collect();
            let summary = format!(
                "gave up on {}: {}",
                list.iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                list[0].detail
            );
            let escalation = self.give_up(service, &list, now);
            return Plan::Settle(Settled {
                outcome: Outcome::GaveUp,
                class,
                summary,
                escalation: Some(escalation),
                scope_note: None,
                quiet: false,
            });
        }
        if !busy.is_empty() {
            return Plan::Busy(busy);
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
                    figures: None,
                }),
                scope_note: Some(note),
                quiet: false,
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
        let mut summary = format!(
            "nothing to do: {serving} of {} replicas of {service} serve",
            obs.replicas.len()
        );
        if !stopped.is_empty() {
            summary.push_str(&format!(
                "; {} stopped on purpose (left stopped)",
                stopped.join(", ")
            ));
        }
        if !left_alone.is_empty() {
            summary.push_str(&format!(
                "; given up on (escalated already): {}",
                left_alone
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Plan::Settle(Settled {
            outcome: Outcome::NoAction,
            class,
            summary,
            escalation: None,
            scope_note: None,
            quiet: !left_alone.is_empty(),
        })
    }

    /// The agent gives up on `list` (decided by the policy, or Docker refused): each replica is
    /// left alone in the life it was given up on, until its next quiet try, which is scheduled;
    /// returns the escalation that tells people (once: see [`Engine::record`]).
    pub(super) fn give_up(&self, service: &str, list: &[GaveUp], now: DateTime<Utc>) -> Escalation {
        let ledger = &self.inner.ctx.ledger;
        let mut next: Option<DateTime<Utc>> = None;
        for g in list {
            let at = ledger.park(&g.name, g.life, g.reason, now);
            next = Some(next.map_or(at, |n| n.min(at)));
            tracing::warn!(replica = %g.name, reason = g.reason.as_str(), retry_at = %at, "given up on; left alone until it changes (a quiet try at retry_at)");
        }
        if let Some(at) = next {
            let wait = (at - now).to_std().unwrap_or_default();
            self.requeue_after(service, wait, "a quiet try at a replica given up on");
        }
        Escalation {
            reason: list[0].reason,
            detail: list
                .iter()
                .map(|g| g.detail.clone())
                .collect::<Vec<_>>()
                .join("\n"),
            count: list.iter().map(|g| g.count).max().unwrap_or(1).max(1),
            replicas: list.iter().map(|g| g.name.clone()).collect(),
            figures: None,
        }
    }

    /// Records a settled look unless it is the agent's own resync finding nothing, or the same
    /// state as the last one recorded for the service.
    async fn settle(&self, draft: Draft, settled: Settled, digest: u64) {
        let external = draft.triggers.iter().any(|t| t.kind.is_external());
        let worth = !settled.quiet
            && (external || settled.outcome != Outcome::NoAction || settled.escalation.is_some());
        if !worth {
            return;
        }
        if !self.first_record_of(&draft.service, digest) {
            return;
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
        self.record(incident, false).await;
    }
}

impl Engine {
    /// True (and remembered) unless `digest` is the state last recorded for `service`: a
    /// repeated alert on an unchanged state is recorded once.
    pub(super) fn first_record_of(&self, service: &str, digest: u64) -> bool {
        let mut state = self.state();
        let slot = state.services.entry(service.to_string()).or_default();
        if slot.last_settled == Some(digest) {
            self.inner
                .metrics
                .deduplicated
                .with_label_values(&[service])
                .inc();
            tracing::debug!("same state as the last record; not recorded again");
            return false;
        }
        slot.last_settled = Some(digest);
        true
    }
}

/// What identifies a dry run: what it would do, to replicas in which lives.
pub(super) fn dry_run_digest(obs: &Observation) -> u64 {
    let s = Settled {
        outcome: Outcome::DryRun,
        class: main_class(obs.replicas.iter().map(|o| &o.diagnosis)),
        summary: String::new(),
        escalation: None,
        scope_note: None,
        quiet: false,
    };
    fingerprint(&s, Some(obs))
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
