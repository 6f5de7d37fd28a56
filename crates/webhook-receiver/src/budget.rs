//! Restart budgets: at most `max` restarts of one replica within `window`, with growing backoff
//! between attempts. A spent budget is an open circuit breaker: the replica is left alone (a crash
//! loop) until old attempts age out of the window.
//!
//! Attempts are persisted to a small JSON file (written atomically) so a restarted agent keeps them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct BudgetPolicy {
    pub max_restarts: u32,
    pub window: Duration,
    /// Wait before the second attempt within the window; doubles for each further attempt.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A replica that was running and healthy at least this long before it failed is not
    /// crash-looping: its earlier attempts are forgotten, as Kubernetes resets CrashLoopBackOff
    /// after a stable period. Zero disables the reset.
    pub stable_after: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BudgetDecision {
    /// May restart after waiting this long (zero for the first attempt).
    Allowed { wait: Duration, attempt: u32 },
    /// Budget spent: `attempts` restarts within the window.
    Exhausted { attempts: u32 },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Entry {
    service: String,
    attempts: Vec<DateTime<Utc>>,
}

pub struct RestartBudget {
    policy: BudgetPolicy,
    path: Option<PathBuf>,
    entries: Mutex<HashMap<String, Entry>>,
}

impl RestartBudget {
    /// Loads earlier attempts from `path` when it exists; a corrupt file is reported and ignored.
    pub fn load(policy: BudgetPolicy, path: Option<PathBuf>) -> Self {
        let entries = path
            .as_deref()
            .and_then(|p| match std::fs::read(p) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "restart budget file unreadable; starting empty");
                        None
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "cannot read restart budget file; starting empty");
                    None
                }
            })
            .unwrap_or_default();
        RestartBudget {
            policy,
            path,
            entries: Mutex::new(entries),
        }
    }

    pub fn policy(&self) -> &BudgetPolicy {
        &self.policy
    }

    fn window_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::from_std(self.policy.window).unwrap_or(chrono::Duration::MAX)
    }

    /// May `replica` be restarted now, and after how long a wait?
    pub fn check(&self, replica: &str, now: DateTime<Utc>) -> BudgetDecision {
        let entries = self.entries.lock().expect("budget lock");
        let since = self.window_start(now);
        let recent: Vec<_> = entries
            .get(replica)
            .map(|e| e.attempts.iter().filter(|t| **t > since).copied().collect())
            .unwrap_or_default();
        let n = recent.len() as u32;
        if n >= self.policy.max_restarts {
            return BudgetDecision::Exhausted { attempts: n };
        }
        let wait = match recent.last() {
            None => Duration::ZERO,
            Some(last) => {
                let backoff = self
                    .policy
                    .backoff_base
                    .saturating_mul(1u32 << (n - 1).min(16))
                    .min(self.policy.backoff_max);
                let elapsed = (now - *last).to_std().unwrap_or(Duration::ZERO);
                backoff.saturating_sub(elapsed)
            }
        };
        BudgetDecision::Allowed {
            wait,
            attempt: n + 1,
        }
    }

    /// Records an attempt and persists the budgets.
    pub fn record(&self, service: &str, replica: &str, at: DateTime<Utc>) {
        let snapshot = {
            let mut entries = self.entries.lock().expect("budget lock");
            let since = self.window_start(at);
            let e = entries.entry(replica.to_string()).or_default();
            e.service = service.to_string();
            e.attempts.retain(|t| *t > since);
            e.attempts.push(at);
            entries.retain(|_, e| e.attempts.iter().any(|t| *t > since));
            serde_json::to_vec(&*entries).expect("budget state serialises")
        };
        if let Some(path) = &self.path {
            if let Err(e) = write_atomically(path, &snapshot) {
                tracing::warn!(path = %path.display(), error = %e, "could not persist restart budgets");
            }
        }
    }

    /// Forgets `replica`'s attempts if it was running and healthy for `stable_after` or longer
    /// before it failed (as Kubernetes resets CrashLoopBackOff after a stable period). Returns
    /// true when it did.
    pub fn reset_if_stable(&self, replica: &str, healthy_for: Duration) -> bool {
        if self.policy.stable_after.is_zero() || healthy_for < self.policy.stable_after {
            return false;
        }
        self.reset(replica)
    }

    /// Forgets `replica`'s attempts (an operator's reset). Returns true when there were any.
    pub fn reset(&self, replica: &str) -> bool {
        self.entries
            .lock()
            .expect("budget lock")
            .remove(replica)
            .is_some()
    }

    /// Replicas of `service` whose budget is spent right now.
    pub fn open_breakers(&self, service: &str, now: DateTime<Utc>) -> usize {
        let entries = self.entries.lock().expect("budget lock");
        let since = self.window_start(now);
        entries
            .values()
            .filter(|e| e.service == service)
            .filter(|e| {
                e.attempts.iter().filter(|t| **t > since).count() as u32 >= self.policy.max_restarts
            })
            .count()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BudgetPolicy {
        BudgetPolicy {
            max_restarts: 3,
            window: Duration::from_secs(600),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(5),
            stable_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_grows_and_budget_runs_out() {
        let b = RestartBudget::load(policy(), None);
        let t0 = Utc::now();
        assert_eq!(
            b.check("r1", t0),
            BudgetDecision::Allowed {
                wait: Duration::ZERO,
                attempt: 1
            }
        );
        b.record("web", "r1", t0);
        assert_eq!(
            b.check("r1", t0),
            BudgetDecision::Allowed {
                wait: Duration::from_secs(2),
                attempt: 2
            }
        );
        let t1 = t0 + chrono::Duration::seconds(1);
        assert_eq!(
            b.check("r1", t1),
            BudgetDecision::Allowed {
                wait: Duration::from_secs(1),
                attempt: 2
            }
        );
        b.record("web", "r1", t1);
        // 2 * 2^1 = 4 s after the latest attempt.
        assert_eq!(
            b.check("r1", t1),
            BudgetDecision::Allowed {
                wait: Duration::from_secs(4),
                attempt: 3
            }
        );
        b.record("web", "r1", t1);
        assert_eq!(b.check("r1", t1), BudgetDecision::Exhausted { attempts: 3 });
        assert_eq!(b.open_breakers("web", t1), 1);
        assert_eq!(b.open_breakers("other", t1), 0);
        // Other replicas have their own budget.
        assert!(matches!(
            b.check("r2", t1),
            BudgetDecision::Allowed { attempt: 1, .. }
        ));
        // Old attempts age out of the window.
        let later = t1 + chrono::Duration::seconds(601);
        assert!(matches!(
            b.check("r1", later),
            BudgetDecision::Allowed { attempt: 1, .. }
        ));
        assert_eq!(b.open_breakers("web", later), 0);
    }

    #[test]
    fn a_replica_that_ran_stably_starts_a_fresh_budget() {
        let b = RestartBudget::load(policy(), None);
        let t = Utc::now();
        for _ in 0..3 {
            b.record("web", "r1", t);
        }
        assert!(
            !b.reset_if_stable("r1", Duration::from_secs(2)),
            "healthy for 2 s, then dead: not stable"
        );
        assert_eq!(b.check("r1", t), BudgetDecision::Exhausted { attempts: 3 });
        assert!(b.reset_if_stable("r1", Duration::from_secs(30)));
        assert_eq!(
            b.check("r1", t),
            BudgetDecision::Allowed {
                wait: Duration::ZERO,
                attempt: 1
            }
        );
        for _ in 0..3 {
            b.record("web", "r1", t);
        }
        assert!(
            b.reset_if_stable("r1", Duration::from_secs(10)),
            "healthy for the whole stable period, then OOM-killed: load, not a crash loop"
        );
        let off = RestartBudget::load(
            BudgetPolicy {
                stable_after: Duration::ZERO,
                ..policy()
            },
            None,
        );
        off.record("web", "r1", t);
        assert!(!off.reset_if_stable("r1", Duration::from_secs(3600)));
    }

    #[test]
    fn budgets_survive_a_restart_of_the_agent() {
        let dir = std::env::temp_dir().join(format!("budget-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("budget.json");
        let now = Utc::now();
        {
            let b = RestartBudget::load(policy(), Some(path.clone()));
            for _ in 0..3 {
                b.record("web", "r1", now);
            }
        }
        let b = RestartBudget::load(policy(), Some(path.clone()));
        assert_eq!(
            b.check("r1", now),
            BudgetDecision::Exhausted { attempts: 3 }
        );
        std::fs::write(&path, b"not json").unwrap();
        let b = RestartBudget::load(policy(), Some(path));
        assert!(matches!(
            b.check("r1", now),
            BudgetDecision::Allowed { attempt: 1, .. }
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
