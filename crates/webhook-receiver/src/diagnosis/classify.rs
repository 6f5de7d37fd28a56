//! Classification: what kind of failure a replica shows, from Docker's state, the agent's own
//! probe and what the agent saw happen to it. Decided before anything acts; the runbook acts by
//! class, and the model sees the diagnosis as data and may not go beyond the action it allows.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::incidents::{ActionKind, FailureClass, ProbeRecord, ReplicaDiagnosis};
use crate::runtime::{Health, ReplicaState, Status};

/// The agent's probes of one running replica in one observation.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    /// The last result.
    pub last: ProbeRecord,
    pub tries: u32,
    pub failures: u32,
}

impl ProbeOutcome {
    /// Every try failed (and there was more than one), the last without any answer in time:
    /// what a hang looks like. A refused connection is not a hang: nothing listens on that port,
    /// which on a replica Docker calls healthy means the probe is misconfigured, not the replica.
    pub fn unanswered(&self) -> bool {
        self.tries >= 2 && self.failures == self.tries && self.last.timed_out
    }
}

/// Everything the diagnosis of one replica may use.
pub struct Evidence<'a> {
    pub state: &'a ReplicaState,
    pub probe: Option<&'a ProbeOutcome>,
    /// When someone asked it to stop in its current life (`docker stop`, `docker compose stop`),
    /// as [`crate::stops`] attributes it: seen by the agent and still trusted, or found in
    /// Docker's event history. A daemon shutdown is not someone asking.
    pub stop_asked_at: Option<DateTime<Utc>>,
    /// Its last log lines (untrusted), fetched for replicas that are down.
    pub logs_tail: Vec<String>,
    pub now: DateTime<Utc>,
    /// `RESTART_STABLE_SECS`: a life shorter than this that never passed a healthcheck is a crash
    /// on start.
    pub stable_after: Duration,
}

/// Exit 0, or 143 (SIGTERM, as `docker stop` sends): what a stop request ends with, and also a
/// daemon shutdown; alone it proves nothing.
pub fn is_requested_stop(exit_code: Option<i64>) -> bool {
    matches!(exit_code, Some(0) | Some(143))
}

/// 129..=192: the process was ended by a signal (128 + its number).
fn by_signal(exit_code: Option<i64>) -> Option<i64> {
    exit_code
        .filter(|c| (129..=192).contains(c))
        .map(|c| c - 128)
}

pub fn diagnose(e: Evidence<'_>) -> ReplicaDiagnosis {
    let s = e.state;
    let (class, action, reason) = classify(&e);
    let secs = |d: chrono::Duration| d.num_milliseconds() as f64 / 1000.0;
    let health_output = s
        .health_log
        .iter()
        .rev()
        .find(|p| p.exit_code != Some(0) && !p.output.is_empty())
        .map(|p| p.output.clone());
    ReplicaDiagnosis {
        name: s.container.name.clone(),
        status: status_str(s.status).to_string(),
        exit_code: (s.status != Status::Running)
            .then_some(s.exit_code)
            .flatten(),
        oom_killed: s.oom_killed,
        health: s.health.map(|h| health_str(h).to_string()),
        restart_count: s.restart_count,
        started_at: s.started_at,
        finished_at: if s.is_exited() { s.finished_at } else { None },
        uptime_seconds: s.uptime(e.now).map(secs),
        healthy_seconds: s.healthy_since.map(|_| secs(s.healthy_for(e.now, true))),
        served: served(&e),
        memory_usage_bytes: s.memory_usage,
        memory_limit_bytes: s.memory_limit,
        needs_healing: action != ActionKind::None,
        class,
        action,
        reason,
        probe: e.probe.map(|p| p.last.clone()),
        health_output,
        logs_tail: e.logs_tail,
    }
}

/// It served in its current (or last) life: passed a healthcheck, or, without one, ran for the
/// stable period.
fn served(e: &Evidence<'_>) -> bool {
    let s = e.state;
    s.healthy_since.is_some()
        || (!s.has_healthcheck()
            && s.uptime(e.now)
                .and_then(|u| u.to_std().ok())
                .is_some_and(|u| u >= e.stable_after))
}

fn classify(e: &Evidence<'_>) -> (FailureClass, ActionKind, String) {
    use FailureClass as C;
    let s = e.state;
    let code = s.exit_code.unwrap_or_default();
    match s.status {
        Status::Paused => (
            C::Hung,
            ActionKind::Unpause,
            "paused: it holds its connections and answers nothing".into(),
        ),
        Status::Running => {
            let stopping = e
                .stop_asked_at
                .zip(s.started_at)
                .is_some_and(|(stop, start)| stop >= start);
            if stopping {
                return (
                    C::NotDown,
                    ActionKind::None,
                    "stopping: a stop was requested (docker stop); left to finish".into(),
                );
            }
            if s.health == Some(Health::Unhealthy) {
                return (
                    C::Unhealthy,
                    ActionKind::Restart,
                    "running, but its healthcheck fails".into(),
                );
            }
            if s.health == Some(Health::Starting) {
                return (
                    C::NotDown,
                    ActionKind::None,
                    "starting: its healthcheck has not passed yet".into(),
                );
            }
            match e.probe {
                Some(p) if p.unanswered() => (
                    C::Hung,
                    ActionKind::Restart,
                    format!(
                        "running, but it answered none of {} probes ({})",
                        p.tries,
                        p.last.error.as_deref().unwrap_or("error status")
                    ),
                ),
                _ => (C::NotDown, ActionKind::None, "running and serving".into()),
            }
        }
        Status::Restarting => (
            C::NotDown,
            ActionKind::None,
            "Docker is restarting it".into(),
        ),
        Status::Removing => (C::NotDown, ActionKind::None, "being removed".into()),
        Status::Created => (
            C::NotDown,
            ActionKind::None,
            "created and not started yet (compose starts it)".into(),
        ),
        Status::Unknown => (
            C::NotDown,
            ActionKind::None,
            "in a state Docker did not name; left alone".into(),
        ),
        Status::Exited | Status::Dead => {
            let asked = e
                .stop_asked_at
                .zip(s.started_at)
                .is_some_and(|(stop, start)| stop >= start);
            if !s.oom_killed && asked {
                return (
                    C::StoppedOnPurpose,
                    ActionKind::None,
                    format!(
                        "stopped on purpose (exit {code}, a stop was requested): left stopped, as Docker's unless-stopped would"
                    ),
                );
            }
            if s.oom_killed {
                let limit = s
                    .memory_limit
                    .map(|l| format!(" at its {} MiB limit", l / (1024 * 1024)))
                    .unwrap_or_default();
                return (
                    C::OomKilled,
                    ActionKind::Start,
                    format!("killed by the kernel for using too much memory{limit} (exit {code})"),
                );
            }
            if let Some(signal) = by_signal(s.exit_code) {
                let why = if signal == 15 {
                    "; no stop request the agent saw or Docker still holds (a daemon shutdown, or a stop it cannot attribute): started again, as unless-stopped would"
                } else {
                    ", not for memory"
                };
                return (
                    C::Killed,
                    ActionKind::Start,
                    format!("killed by signal {signal} (exit {code}){why}"),
                );
            }
            let lived = s.uptime(e.now).unwrap_or_default();
            let young = lived.to_std().unwrap_or_default() < e.stable_after;
            let served = served(e);
            if code == 0 && (served || !young) {
                return (
                    C::Killed,
                    ActionKind::Start,
                    "stopped (exit 0) with no stop request the agent saw or Docker still holds (a daemon shutdown, or a stop it cannot attribute): started again, as unless-stopped would".into(),
                );
            }
            if !served && young {
                let last = e
                    .logs_tail
                    .last()
                    .map(|l| format!("; last log line: {l}"))
                    .unwrap_or_default();
                return (
                    C::CrashedOnStart,
                    ActionKind::Start,
                    format!(
                        "exited with code {code} after {:.1} s without ever serving{last}",
                        lived.num_milliseconds() as f64 / 1000.0
                    ),
                );
            }
            (
                C::Crashed,
                ActionKind::Start,
                if served {
                    format!("exited with code {code} after it had served")
                } else {
                    format!(
                        "exited with code {code} after running {:.1} s",
                        lived.num_milliseconds() as f64 / 1000.0
                    )
                },
            )
        }
    }
}

pub fn status_str(s: Status) -> &'static str {
    match s {
        Status::Created => "created",
        Status::Running => "running",
        Status::Paused => "paused",
        Status::Restarting => "restarting",
        Status::Removing => "removing",
        Status::Exited => "exited",
        Status::Dead => "dead",
        Status::Unknown => "unknown",
    }
}

fn health_str(h: Health) -> &'static str {
    match h {
        Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerRef, HealthProbe};

    fn state(status: Status) -> ReplicaState {
        let now = Utc::now();
        ReplicaState {
            container: ContainerRef {
                id: "id1".into(),
                name: "p-webapp-1".into(),
                project: "p".into(),
                service: "webapp".into(),
                labels: Default::default(),
            },
            status,
            exit_code: None,
            oom_killed: false,
            health: None,
            restart_count: 0,
            healthy_since: None,
            health_log: vec![],
            started_at: Some(now - chrono::Duration::seconds(60)),
            finished_at: None,
            memory_limit: Some(256 * 1024 * 1024),
            memory_usage: None,
            ip: None,
        }
    }

    fn exited(code: i64, lived_secs: i64, healthy: bool) -> ReplicaState {
        let mut s = state(Status::Exited);
        let start = Utc::now() - chrono::Duration::seconds(100);
        s.exit_code = Some(code);
        s.started_at = Some(start);
        s.finished_at = Some(start + chrono::Duration::seconds(lived_secs));
        s.healthy_since = healthy.then(|| start + chrono::Duration::seconds(1));
        s
    }

    fn class_of(s: &ReplicaState, probe: Option<&ProbeOutcome>) -> (FailureClass, ActionKind) {
        let d = diagnose(Evidence {
            state: s,
            probe,
            stop_asked_at: None,
            logs_tail: vec!["panic: bad PORT".into()],
            now: Utc::now(),
            stable_after: Duration::from_secs(10),
        });
        assert_eq!(d.needs_healing, d.action != ActionKind::None);
        (d.class, d.action)
    }

    fn probe(failures: u32) -> ProbeOutcome {
        ProbeOutcome {
            last: ProbeRecord {
                ok: failures == 0,
                url: None,
                status: None,
                latency_ms: 1000,
                error: (failures > 0).then(|| "timeout".into()),
                timed_out: failures > 0,
            },
            tries: 2,
            failures,
        }
    }

    #[test]
    fn each_failure_has_its_class_and_action() {
        use ActionKind as A;
        use FailureClass as C;
        let mut oom = exited(137, 30, true);
        oom.oom_killed = true;
        assert_eq!(class_of(&oom, None), (C::OomKilled, A::Start));
        assert_eq!(
            class_of(&exited(137, 30, true), None),
            (C::Killed, A::Start)
        );
        assert_eq!(
            class_of(&exited(137, 0, false), None),
            (C::Killed, A::Start),
            "a kill is a kill, however young"
        );
        assert_eq!(
            class_of(&exited(1, 0, false), None),
            (C::CrashedOnStart, A::Start)
        );
        assert_eq!(
            class_of(&exited(2, 60, false), None),
            (C::Crashed, A::Start)
        );
        assert_eq!(class_of(&exited(1, 3, true), None), (C::Crashed, A::Start));
        assert_eq!(
            class_of(&exited(0, 30, true), None),
            (C::Killed, A::Start),
            "exit 0 alone is not a request: nobody the agent can name asked"
        );
        assert_eq!(
            class_of(&exited(143, 30, true), None),
            (C::Killed, A::Start)
        );
        assert_eq!(
            class_of(&state(Status::Paused), None),
            (C::Hung, A::Unpause)
        );
        let mut sick = state(Status::Running);
        sick.health = Some(Health::Unhealthy);
        assert_eq!(class_of(&sick, None), (C::Unhealthy, A::Restart));
        let mut fine = state(Status::Running);
        fine.health = Some(Health::Healthy);
        assert_eq!(class_of(&fine, Some(&probe(0))), (C::NotDown, A::None));
        assert_eq!(
            class_of(&fine, Some(&probe(1))),
            (C::NotDown, A::None),
            "one slow answer is not a hang"
        );
        assert_eq!(
            class_of(&fine, Some(&probe(2))),
            (C::Hung, A::Restart),
            "Docker says healthy, nothing answers"
        );
        let stopping = state(Status::Running);
        let d = diagnose(Evidence {
            state: &stopping,
            probe: Some(&probe(2)),
            stop_asked_at: Some(Utc::now()),
            logs_tail: vec![],
            now: Utc::now(),
            stable_after: Duration::from_secs(10),
        });
        assert_eq!(
            (d.class, d.action),
            (C::NotDown, A::None),
            "a replica being stopped is not hung"
        );
        let mut booting = state(Status::Running);
        booting.health = Some(Health::Starting);
        assert_eq!(class_of(&booting, Some(&probe(2))), (C::NotDown, A::None));
        for st in [Status::Restarting, Status::Removing, Status::Created] {
            assert_eq!(class_of(&state(st), None), (C::NotDown, A::None), "{st:?}");
        }
    }

    #[test]
    fn a_stop_request_seen_in_this_life_means_on_purpose_whatever_the_code() {
        let s = exited(137, 30, true);
        let at = |stop: DateTime<Utc>| {
            diagnose(Evidence {
                state: &s,
                probe: None,
                stop_asked_at: Some(stop),
                logs_tail: vec![],
                now: Utc::now(),
                stable_after: Duration::from_secs(10),
            })
            .class
        };
        assert_eq!(at(s.finished_at.unwrap()), FailureClass::StoppedOnPurpose);
        assert_eq!(
            at(s.started_at.unwrap() - chrono::Duration::seconds(5)),
            FailureClass::Killed,
            "a stop of an earlier life does not count"
        );
    }

    #[test]
    fn an_exit_nobody_asked_for_is_restored_whatever_the_code() {
        // A daemon shutdown ends the webapp as `docker stop` does (SIGTERM, exit 0 or 143):
        // without a request the agent can attribute, it is restored, as unless-stopped would.
        let d = |s: &ReplicaState, asked: Option<DateTime<Utc>>| {
            let d = diagnose(Evidence {
                state: s,
                probe: None,
                stop_asked_at: asked,
                logs_tail: vec![],
                now: Utc::now(),
                stable_after: Duration::from_secs(10),
            });
            (d.class, d.action, d.served)
        };
        let served = exited(0, 30, true);
        assert_eq!(
            d(&served, None),
            (FailureClass::Killed, ActionKind::Start, true)
        );
        assert_eq!(
            d(&served, served.finished_at),
            (FailureClass::StoppedOnPurpose, ActionKind::None, true)
        );
        assert_eq!(
            d(&exited(143, 30, true), None).0,
            FailureClass::Killed,
            "SIGTERM from nobody the agent can name"
        );
        assert_eq!(
            d(&exited(0, 0, false), None).0,
            FailureClass::CrashedOnStart,
            "exit 0 at once, never healthy: its command is wrong"
        );
        let mut oom = exited(137, 30, true);
        oom.oom_killed = true;
        assert_eq!(
            d(&oom, oom.finished_at).0,
            FailureClass::OomKilled,
            "an OOM kill is never on purpose"
        );
    }

    #[test]
    fn evidence_is_recorded() {
        let mut s = exited(1, 0, false);
        s.health_log = vec![HealthProbe {
            start: None,
            exit_code: Some(1),
            output: "connection refused".into(),
        }];
        let d = diagnose(Evidence {
            state: &s,
            probe: None,
            stop_asked_at: None,
            logs_tail: vec!["error: PORT must be a number".into()],
            now: Utc::now(),
            stable_after: Duration::from_secs(10),
        });
        assert_eq!(d.exit_code, Some(1));
        assert_eq!(d.health_output.as_deref(), Some("connection refused"));
        assert!(
            d.reason.contains("code 1") && d.reason.contains("PORT must be a number"),
            "{}",
            d.reason
        );
        assert_eq!(d.uptime_seconds, Some(0.0));
    }
}
