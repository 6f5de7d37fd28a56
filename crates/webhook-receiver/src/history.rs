//! The deaths the agent healed, per replica: the memory behind the recurrence escalation and its
//! numbers.
//!
//! The same replica healed for the same class `ESCALATE_AFTER` times within `ESCALATE_WINDOW` is
//! a recurrence: it keeps being restarted (it served; the service must serve), and people are
//! told once, with the figures (deaths per minute, the length of each life, memory at death) and
//! the likely cause ("more load than 3 replicas of 256 MiB can carry"). Telling them once is the
//! engine's open-escalation record; this only counts.
//!
//! Kept in memory: after an agent restart the counts begin again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::incidents::{FailureClass, RecurrenceFigures, ReplicaDiagnosis};
use crate::persist::lock;

#[derive(Debug, Clone)]
pub struct EscalationPolicy {
    pub after: u32,
    pub window: Duration,
    pub crash_on_start_tries: u32,
}

/// One death the agent healed.
#[derive(Debug, Clone)]
struct Death {
    class: FailureClass,
    at: DateTime<Utc>,
    life_seconds: Option<f64>,
    oom: bool,
    memory_limit: Option<u64>,
}

#[derive(Default)]
struct Replica {
    service: String,
    deaths: Vec<Death>,
}

/// Deaths kept per replica (nothing older than the window is kept anyway).
const MAX_DEATHS: usize = 1000;

pub struct History {
    policy: EscalationPolicy,
    replicas: Mutex<HashMap<String, Replica>>,
}

impl History {
    pub fn new(policy: EscalationPolicy) -> Self {
        History {
            policy,
            replicas: Mutex::new(HashMap::new()),
        }
    }

    pub fn policy(&self) -> &EscalationPolicy {
        &self.policy
    }

    fn since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        chrono::Duration::from_std(self.policy.window)
            .ok()
            .and_then(|w| now.checked_sub_signed(w))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Records the healing of `d` (Docker confirmed the action at `at`). Returns how many times
    /// this replica was healed for this class within the window when that makes a recurrence.
    pub fn record(&self, service: &str, d: &ReplicaDiagnosis, at: DateTime<Utc>) -> Option<u32> {
        let since = self.since(at);
        let mut all = lock(&self.replicas);
        let r = all.entry(d.name.clone()).or_default();
        r.service = service.to_string();
        r.deaths.retain(|x| x.at > since);
        r.deaths.push(Death {
            class: d.class,
            at,
            life_seconds: d.uptime_seconds,
            oom: d.oom_killed,
            memory_limit: d.memory_limit_bytes,
        });
        if r.deaths.len() > MAX_DEATHS {
            r.deaths.remove(0);
        }
        let count = r.deaths.iter().filter(|x| x.class == d.class).count() as u32;
        (self.policy.after > 0 && count >= self.policy.after).then_some(count)
    }

    /// The newest death healed in `service`.
    pub fn last_death(&self, service: &str) -> Option<DateTime<Utc>> {
        lock(&self.replicas)
            .values()
            .filter(|r| r.service == service)
            .filter_map(|r| r.deaths.last().map(|d| d.at))
            .max()
    }

    /// The figures of `service`'s deaths within the window, for a recurrence escalation.
    pub fn figures(
        &self,
        service: &str,
        replicas: usize,
        now: DateTime<Utc>,
    ) -> Option<RecurrenceFigures> {
        let since = self.since(now);
        let all = lock(&self.replicas);
        let deaths: Vec<&Death> = all
            .values()
            .filter(|r| r.service == service)
            .flat_map(|r| r.deaths.iter().filter(|d| d.at > since))
            .collect();
        let first = deaths.iter().map(|d| d.at).min()?;
        let n = deaths.len() as u32;
        // Over the time the deaths span (at least a minute): a burst is not averaged away.
        let span = (now - first).num_milliseconds().max(60_000) as f64 / 1000.0;
        let lives: Vec<f64> = deaths.iter().filter_map(|d| d.life_seconds).collect();
        let mean_life = if lives.is_empty() {
            0.0
        } else {
            lives.iter().sum::<f64>() / lives.len() as f64
        };
        let oom_kills = deaths.iter().filter(|d| d.oom).count() as u32;
        let memory_limit = deaths.iter().filter_map(|d| d.memory_limit).max();
        let mut by_class: HashMap<FailureClass, u32> = HashMap::new();
        for d in &deaths {
            *by_class.entry(d.class).or_default() += 1;
        }
        let main = by_class
            .into_iter()
            .max_by_key(|(c, n)| (*n, c.as_str()))
            .map(|(c, _)| c)
            .unwrap_or_default();
        let mib = memory_limit
            .map(|m| format!("{} MiB", m / (1024 * 1024)))
            .unwrap_or_else(|| "unlimited memory".into());
        let likely_cause = match main {
            FailureClass::OomKilled => format!(
                "more load than {replicas} replicas of {mib} can carry (or a leak): each life lasted {mean_life:.1} s on average before the kernel killed it at its memory limit; add replicas or memory, or shed load"
            ),
            FailureClass::Killed => format!(
                "something outside the replicas kills them (a signal, not their memory): {n} deaths; find who sends it"
            ),
            FailureClass::Crashed => format!(
                "the replicas crash after serving, every {mean_life:.1} s of life on average: read their logs"
            ),
            FailureClass::Hung => "the replicas stop answering after serving a while: look for a deadlock or an exhausted pool".to_string(),
            FailureClass::Unhealthy => "the replicas' healthcheck fails after they served a while: look at what it checks".to_string(),
            other => format!("the replicas keep failing the same way ({})", other.as_str()),
        };
        Some(RecurrenceFigures {
            deaths: n,
            window_seconds: span,
            deaths_per_minute: (n as f64 * 60.0 / span * 10.0).round() / 10.0,
            mean_life_seconds: (mean_life * 10.0).round() / 10.0,
            oom_kills,
            memory_limit_bytes: memory_limit,
            replicas,
            likely_cause,
        })
    }

    /// Forgets `replica` (an operator's reset).
    pub fn reset(&self, replica: &str) -> bool {
        lock(&self.replicas).remove(replica).is_some()
    }

    /// Forgets deaths older than the window (keeps memory bounded over weeks).
    pub fn prune(&self, now: DateTime<Utc>) {
        let since = self.since(now);
        lock(&self.replicas).retain(|_, r| {
            r.deaths.retain(|d| d.at > since);
            !r.deaths.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::ActionKind;

    fn history() -> History {
        History::new(EscalationPolicy {
            after: 3,
            window: Duration::from_secs(600),
            crash_on_start_tries: 2,
        })
    }

    fn death(name: &str, class: FailureClass, life: f64) -> ReplicaDiagnosis {
        ReplicaDiagnosis {
            name: name.into(),
            status: "exited".into(),
            exit_code: Some(137),
            oom_killed: class == FailureClass::OomKilled,
            health: None,
            restart_count: 0,
            started_at: None,
            finished_at: None,
            uptime_seconds: Some(life),
            healthy_seconds: None,
            served: true,
            memory_usage_bytes: None,
            memory_limit_bytes: Some(256 << 20),
            needs_healing: true,
            class,
            action: ActionKind::Start,
            reason: String::new(),
            probe: None,
            health_output: None,
            logs_tail: vec![],
        }
    }

    #[test]
    fn the_nth_death_of_a_kind_in_the_window_is_a_recurrence() {
        let h = history();
        let t = Utc::now();
        let s = |n: i64| t + chrono::Duration::seconds(n);
        let oom = |n| death(n, FailureClass::OomKilled, 5.0);
        assert_eq!(h.record("web", &oom("r1"), s(0)), None);
        assert_eq!(
            h.record("web", &death("r1", FailureClass::Killed, 5.0), s(1)),
            None,
            "another class counts apart"
        );
        assert_eq!(h.record("web", &oom("r1"), s(2)), None);
        assert_eq!(
            h.record("web", &oom("r2"), s(3)),
            None,
            "another replica counts apart"
        );
        assert_eq!(h.record("web", &oom("r1"), s(4)), Some(3));
        assert_eq!(
            h.record("web", &oom("r1"), s(5)),
            Some(4),
            "the engine tells people once"
        );
        assert_eq!(h.last_death("web"), Some(s(5)));
        let f = h.figures("web", 3, s(60)).unwrap();
        assert_eq!(f.deaths, 6);
        assert_eq!(f.oom_kills, 5);
        assert_eq!(f.deaths_per_minute, 6.0);
        assert_eq!(f.mean_life_seconds, 5.0);
        assert_eq!(f.memory_limit_bytes, Some(256 << 20));
        assert!(
            f.likely_cause
                .contains("more load than 3 replicas of 256 MiB can carry"),
            "{}",
            f.likely_cause
        );
        // Past the window the old deaths age out.
        assert_eq!(h.record("web", &oom("r1"), s(700)), None);
        assert!(h.reset("r1"));
        h.prune(s(2000));
        assert!(h.figures("web", 3, s(2000)).is_none());
    }
}
