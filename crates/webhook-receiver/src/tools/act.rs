//! `restart_container`: acting on one replica. Its target is resolved among the run's own
//! replicas and held (by container id) before any await; the facts are gathered once from live
//! state and the policy decides; a backoff wait ends with a fresh look; Docker's refusals are
//! tried again, then given up on; what Docker confirmed is recorded in the ledger, in one place.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{guard, Acted, GaveUp, Recurrence, ToolError, Toolbox};
use crate::diagnosis;
use crate::incidents::{ActionKind, EscalationReason, ReplicaDiagnosis};
use crate::ledger::Life;
use crate::policy::{self, Actor, Decision, Facts, RunFacts};
use crate::runtime::{ContainerRef, ReplicaState, RuntimeError, Status};

/// Stop timeout when restarting a running replica: a hung process will not exit on SIGTERM, and
/// every second here is a second of outage.
const RESTART_STOP_TIMEOUT_SECS: u32 = 2;
/// How often a replica's own verification polls Docker.
const POLL: Duration = Duration::from_millis(200);
/// Attempts at an action Docker refuses (a port taken, a missing bind source, a proxy that
/// forbids it) before the agent gives up on the replica, and the pause before the second one
/// (doubling): a one-off refusal is retried, a standing one is escalated once.
pub const REFUSED_TRIES: u32 = 3;
const REFUSED_PAUSE: Duration = Duration::from_secs(1);
/// Looks at a replica while its backoff runs (each wait ends with a fresh look at live state).
const MAX_LOOKS: usize = 4;

impl Toolbox {
    /// `restart_container`: the action the replica's class allows (start an exited replica,
    /// unpause a paused one, restart a running one that is unhealthy or hung), if the policy
    /// allows it now. For the model, the replica's own verification comes with the result.
    pub async fn act(&self, name: &str, by: Actor) -> Result<Value, ToolError> {
        let result = self.act_inner(name, by).await;
        let metric = match &result {
            Ok(v) if v.get("dry_run").is_some() => None,
            Ok(_) => Some("ok"),
            Err(ToolError::Runtime(_)) => Some("error"),
            Err(_) => Some("denied"),
        };
        if let Some(m) = metric {
            self.ctx
                .metrics
                .restarts
                .with_label_values(&[self.service.as_str(), m])
                .inc();
        }
        self.finish(
            by,
            "restart_container",
            Some(name),
            json!({ "name": name }),
            result,
        )
    }

    async fn act_inner(&self, name: &str, by: Actor) -> Result<Value, ToolError> {
        // Counted, resolved among the run's own replicas (every alias finds the same one) and
        // held, all before the first await: a parallel or aliased call of the same run sees the
        // hold and is refused, so one replica is never acted on twice at once.
        let requests = self.record.count_request(by);
        if let Some(Decision::Stop(reason)) = policy::request_cap(by, requests, self.claimed.len())
        {
            return Err(ToolError::Stop(reason));
        }
        let known = guard::find(&self.known, name).cloned();
        let hold = known.as_ref().and_then(|t| self.record.hold(&t.id));
        let in_flight = known.is_some() && hold.is_none();
        let target = match known {
            Some(t) => t,
            // Not one of the replicas the run found: resolved live, for scope (and refused by
            // the policy: it is not this run's).
            None => self.resolve(name).await?,
        };
        let (diag, action, attempt) = self.decide(&target, by, requests, in_flight).await?;
        if self.ctx.dry_run {
            return Ok(json!({
                "name": target.name, "class": diag.class, "action": "none",
                "dry_run": true, "would": action,
            }));
        }
        // The time the action began: a replica that crashes on start may die before Docker even
        // answers, and its death must still count as after the action.
        let at = self.ctx.clock.now();
        self.perform(&target, &diag, action).await?;
        self.record.confirm(Acted {
            container: target.clone(),
            action,
            class: diag.class,
            at,
            by,
        });
        // The one place an action is recorded: backoff, tries, deaths healed.
        if let Some(count) = self.ctx.ledger.acted(&self.service, &diag, at) {
            self.record.recur(Recurrence {
                name: target.name.clone(),
                class: diag.class,
                count,
            });
        }
        drop(hold);
        tracing::info!(container = %target.name, action = action.as_str(), class = diag.class.as_str(), attempt, by = by.as_str(), "replica acted on");
        let mut out = json!({
            "name": target.name,
            "action": action,
            "class": diag.class,
            "previous_status": diag.status,
            "exit_code": diag.exit_code,
            "oom_killed": diag.oom_killed,
            "attempt": attempt,
        });
        if by == Actor::Llm {
            out["verification"] = self.wait_serving(&target, at).await;
        }
        Ok(out)
    }

    /// Gathers the facts once from live state, asks the policy, and while it says "after a
    /// backoff", waits and looks again: the action is taken only if it still fits the replica as
    /// it is then (it may have recovered, or been stopped by an operator meanwhile).
    async fn decide(
        &self,
        target: &ContainerRef,
        by: Actor,
        requests: usize,
        in_flight: bool,
    ) -> Result<(ReplicaDiagnosis, ActionKind, u32), ToolError> {
        for look in 1..=MAX_LOOKS {
            let state = self.ctx.runtime.inspect(target, false).await?;
            let now = self.ctx.clock.now();
            let diag = self.diagnose_live(&state).await;
            let facts = Facts {
                actor: by,
                diagnosis: &diag,
                level: self.level,
                replica: self.ctx.ledger.facts(&diag, now),
                run: RunFacts {
                    claimed: self.claims(&target.id),
                    in_flight,
                    already_acted: self.record.has_acted_on(&target.id),
                    requests,
                    replicas: self.claimed.len(),
                },
            };
            let tries = facts.replica.tries;
            match policy::decide(&facts) {
                Decision::Stop(reason) => return Err(ToolError::Stop(reason)),
                Decision::Deny { reason, .. } => return Err(ToolError::Denied(reason)),
                Decision::GiveUp { reason, detail } => {
                    self.record.give_up(GaveUp {
                        name: target.name.clone(),
                        reason,
                        detail: escalation_detail(&diag, &detail),
                        count: tries,
                        life: Life::of(&diag),
                    });
                    return Err(ToolError::Denied(format!("{detail}; escalated to people")));
                }
                Decision::Act { wait, .. } if !wait.is_zero() && look < MAX_LOOKS => {
                    tracing::info!(container = %target.name, wait_ms = wait.as_millis() as u64, "restart backoff");
                    tokio::time::sleep(wait).await;
                }
                Decision::Act {
                    action, attempt, ..
                } => return Ok((diag, action, attempt)),
            }
        }
        unreachable!("the last look always decides")
    }

    /// Asks Docker for `action`. A refusal (Docker answered, and said no) is tried again after a
    /// pause while the action still fits; after [`REFUSED_TRIES`] the agent gives up on the
    /// replica and escalates, once, with Docker's words.
    async fn perform(
        &self,
        target: &ContainerRef,
        diag: &ReplicaDiagnosis,
        action: ActionKind,
    ) -> Result<(), ToolError> {
        let mut refusals = Vec::new();
        loop {
            let done = match action {
                ActionKind::Start => self.ctx.runtime.start(&target.name).await,
                ActionKind::Unpause => self.ctx.runtime.unpause(&target.name).await,
                ActionKind::Restart => self.restart_running(target).await,
                ActionKind::None => unreachable!("the policy never allows no action"),
            };
            let message = match done {
                Ok(()) => return Ok(()),
                Err(RuntimeError::Api(m)) => m,
                Err(e) => return Err(e.into()),
            };
            tracing::warn!(container = %target.name, action = action.as_str(), error = %message, "docker refused the action");
            refusals.push(message);
            let n = refusals.len() as u32;
            if n >= REFUSED_TRIES {
                let last = refusals.last().cloned().unwrap_or_default();
                self.record.give_up(GaveUp {
                    name: target.name.clone(),
                    reason: EscalationReason::Refused,
                    detail: escalation_detail(
                        diag,
                        &format!(
                            "Docker refused to {} {} {n} times in a row ({}): a restart cannot fix that; fix the cause (a port taken, a missing bind source, the socket proxy's rules)",
                            action.as_str(),
                            target.name,
                            crate::text::bounded(&last, 300)
                        ),
                    ),
                    count: n,
                    life: Life::of(diag),
                });
                return Err(RuntimeError::Api(last).into());
            }
            tokio::time::sleep(REFUSED_PAUSE.saturating_mul(1 << (n - 1))).await;
            // Only while the action still fits: someone may have started it meanwhile.
            let state = self.ctx.runtime.inspect(target, false).await?;
            let now_diag = self.diagnose_live(&state).await;
            if now_diag.action != action || Life::of(&now_diag) != Life::of(diag) {
                return Err(ToolError::Denied(format!(
                    "{} changed while Docker refused the action ({}): not acting on it again",
                    target.name, now_diag.reason
                )));
            }
        }
    }

    /// Restarts a running replica, marking the events of the restart as the agent's own until
    /// the container's new start.
    async fn restart_running(&self, target: &ContainerRef) -> Result<(), RuntimeError> {
        self.ctx.stops.begin_own(&target.id, self.ctx.clock.now());
        let r = self
            .ctx
            .runtime
            .restart(&target.name, RESTART_STOP_TIMEOUT_SECS)
            .await;
        let new_start = match &r {
            Ok(()) => self
                .ctx
                .runtime
                .inspect(target, false)
                .await
                .ok()
                .and_then(|s| s.started_at),
            Err(_) => None,
        };
        self.ctx.stops.end_own(
            &target.id,
            new_start.unwrap_or_else(|| self.ctx.clock.now()),
        );
        r
    }

    /// The diagnosis of `state` now, reusing the run's probe of the same life of the replica.
    pub(super) async fn diagnose_live(&self, state: &ReplicaState) -> ReplicaDiagnosis {
        let probe = if state.status == Status::Running {
            match self
                .probes
                .get(&(state.container.id.clone(), state.started_at))
            {
                Some(p) => Some(p.clone()),
                None => diagnosis::probe_replica(&self.ctx, state).await,
            }
        } else {
            None
        };
        diagnosis::diagnose_state(&self.ctx, &self.project, state, probe.as_ref()).await
    }

    /// Polls one replica until it serves again, dies again, or the time is up.
    async fn wait_serving(&self, target: &ContainerRef, acted_at: DateTime<Utc>) -> Value {
        let deadline = tokio::time::Instant::now() + self.ctx.verify_timeout;
        loop {
            let state = match self.ctx.runtime.inspect(target, false).await {
                Ok(s) => s,
                Err(e) => return json!({ "serving": false, "error": e.to_string() }),
            };
            let summary = |serving: bool| {
                json!({
                    "serving": serving,
                    "status": diagnosis::status_str(state.status),
                    "health": state.health.map(|h| format!("{h:?}").to_lowercase()),
                })
            };
            if state.is_serving() {
                return summary(true);
            }
            if state.is_exited() && state.finished_at.is_some_and(|f| f >= acted_at) {
                let mut v = summary(false);
                v["exit_code"] = json!(state.exit_code);
                v["note"] = json!("it exited again after the action");
                return v;
            }
            if tokio::time::Instant::now() + POLL > deadline {
                let mut v = summary(false);
                v["note"] = json!("not serving yet when the wait ended");
                return v;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// What people need to know about a replica the agent gives up on: why (`why`), its exit code,
/// the tail of its log, and how to let the agent try again.
pub fn escalation_detail(d: &ReplicaDiagnosis, why: &str) -> String {
    let tail: Vec<&str> = d
        .logs_tail
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(String::as_str)
        .collect();
    let logs = if tail.is_empty() {
        String::new()
    } else {
        format!("; last log lines: {}", tail.join(" | "))
    };
    let code = d
        .exit_code
        .map(|c| format!("exit code {c}, "))
        .unwrap_or_default();
    format!(
        "{why} ({code}{}){logs}; once fixed: `docker compose up -d`, or POST /reset?replica={}",
        d.reason, d.name
    )
}
