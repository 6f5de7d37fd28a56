//! Restart pacing per replica, persisted: how many restarts the agent made lately (the backoff
//! before the next one grows with them) and how many of its actions since the replica last served
//! (a replica that never serves again is given up on after `CRASH_ON_START_TRIES` of them).
//!
//! There is no budget to spend any more: a replica that served before it died is restarted every
//! time, after a backoff capped at `RESTART_BACKOFF_MAX_MS` (the floor the agent keeps, see
//! docs/agent.md). The backoff starts again once the replica ran healthy for
//! `RESTART_STABLE_SECS` (Docker resets its own after 10 s of running).
//!
//! Kept in `restart-budget.json` through [`crate::persist`] (crash-safe writes off the async
//! runtime); entry by entry, what cannot be parsed is skipped with a warning.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::persist::{lock, read_object, Persister};

#[derive(Debug, Clone)]
pub struct BudgetPolicy {
    /// How long a restart counts for the backoff (`RESTART_WINDOW_SECS`).
    pub window: Duration,
    /// Wait before the second restart of a streak; doubles for each further one.
    pub backoff_base: Duration,
    /// The longest wait: low enough that a replica dying under load still serves most of the
    /// time (under 20 Locust users Docker's own backoff, which grows to a minute, served 73 % of
    /// requests where this 2 s cap served 95 %; see the README).
    pub backoff_max: Duration,
    /// A replica that ran healthy at least this long before it failed starts a new streak: no
    /// backoff. Zero: never.
    pub stable_after: Duration,
}

/// When the next restart of a replica may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Zero for the first restart of a streak.
    pub wait: Duration,
    /// 1 for the first restart of a streak.
    pub attempt: u32,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Entry {
    service: String,
    /// Restarts of the current streak within the window.
    attempts: Vec<DateTime<Utc>>,
    /// Actions since the replica last served.
    #[serde(default)]
    tries: u32,
}

pub struct RestartBudget {
    policy: BudgetPolicy,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    persist: Option<Persister>,
}

impl RestartBudget {
    /// Loads earlier restarts from `path` when it exists (blocking: for tests and sync callers;
    /// the agent uses [`RestartBudget::open`]). What cannot be read is reported and skipped.
    pub fn load(policy: BudgetPolicy, path: Option<PathBuf>) -> Self {
        let entries = path.as_deref().map(read_entries).unwrap_or_default();
        let entries = Arc::new(Mutex::new(entries));
        let persist = path.map(|p| Persister::start(p, entries.clone(), "restart budgets"));
        RestartBudget {
            policy,
            entries,
            persist,
        }
    }

    /// Why the budgets are not on disk right now, if they are not (a fault for `/healthz`,
    /// never a reason to stop healing: they stay in memory).
    pub fn fault(&self) -> Option<String> {
        self.persist.as_ref().and_then(Persister::fault)
    }

    /// [`RestartBudget::load`] on the blocking pool.
    pub async fn open(policy: BudgetPolicy, path: Option<PathBuf>) -> Self {
        let fallback = (policy.clone(), path.clone());
        match tokio::task::spawn_blocking(move || Self::load(policy, path)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "loading the restart budgets failed; starting empty");
                let (policy, path) = fallback;
                let entries = Arc::new(Mutex::new(HashMap::new()));
                RestartBudget {
                    policy,
                    persist: path.map(|p| Persister::start(p, entries.clone(), "restart budgets")),
                    entries,
                }
            }
        }
    }

    pub fn policy(&self) -> &BudgetPolicy {
        &self.policy
    }

    fn window_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        chrono::Duration::from_std(self.policy.window)
            .ok()
            .and_then(|w| now.checked_sub_signed(w))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The wait before the next restart of `replica`: none for the first of a streak, then
    /// `backoff_base` doubling per restart, at most `backoff_max`, counted from the last one.
    pub fn backoff(&self, replica: &str, now: DateTime<Utc>) -> Backoff {
        let entries = lock(&self.entries);
        let since = self.window_start(now);
        let recent: Vec<_> = entries
            .get(replica)
            .map(|e| e.attempts.iter().filter(|t| **t > since).copied().collect())
            .unwrap_or_default();
        let n = recent.len() as u32;
        let wait = match recent.iter().max() {
            None => Duration::ZERO,
            Some(last) => {
                let backoff = self
                    .policy
                    .backoff_base
                    .saturating_mul(1u32 << n.saturating_sub(1).min(16))
                    .min(self.policy.backoff_max);
                let elapsed = (now - *last).to_std().unwrap_or(Duration::ZERO);
                backoff.saturating_sub(elapsed)
            }
        };
        Backoff {
            wait,
            attempt: n.saturating_add(1),
        }
    }

    /// The agent's actions on `replica` since it last served.
    pub fn tries(&self, replica: &str) -> u32 {
        lock(&self.entries).get(replica).map_or(0, |e| e.tries)
    }

    /// Records an action Docker confirmed, and persists (in the background).
    pub fn record(&self, service: &str, replica: &str, at: DateTime<Utc>) {
        {
            let mut entries = lock(&self.entries);
            let since = self.window_start(at);
            let e = entries.entry(replica.to_string()).or_default();
            e.service = service.to_string();
            e.attempts.retain(|t| *t > since);
            e.attempts.push(at);
            // Nobody restarts a replica that often within a window; bounded all the same.
            if e.attempts.len() > 1000 {
                e.attempts.remove(0);
            }
            e.tries = e.tries.saturating_add(1);
            entries.retain(|_, e| e.tries > 0 || e.attempts.iter().any(|t| *t > since));
        }
        self.persist();
    }

    /// `replica` served (became healthy) since the agent's last action: its tries start again.
    /// Returns true when that changed anything.
    pub fn served(&self, replica: &str) -> bool {
        let changed = match lock(&self.entries).get_mut(replica) {
            Some(e) if e.tries > 0 => {
                e.tries = 0;
                true
            }
            _ => false,
        };
        if changed {
            self.persist();
        }
        changed
    }

    /// `replica` ran healthy for `healthy_for`: at least `stable_after` ends its streak (no
    /// backoff before the next restart). Returns true when there was a streak to end.
    pub fn settle_if_stable(&self, replica: &str, healthy_for: Duration) -> bool {
        if self.policy.stable_after.is_zero() || healthy_for < self.policy.stable_after {
            return false;
        }
        self.reset(replica)
    }

    /// Forgets `replica`'s restarts and tries (an operator's reset, or a stable run). True when
    /// it had any.
    pub fn reset(&self, replica: &str) -> bool {
        let removed = lock(&self.entries).remove(replica).is_some();
        if removed {
            self.persist();
        }
        removed
    }

    /// Waits until every change made before this call is on disk (or its write failed and was
    /// logged). For shutdown and tests; returns at once without a file.
    pub async fn flush(&self) {
        if let Some(p) = &self.persist {
            p.flush().await;
        }
    }

    fn persist(&self) {
        if let Some(p) = &self.persist {
            p.schedule();
        }
    }
}

/// Reads the budget file, entry by entry.
fn read_entries(path: &std::path::Path) -> HashMap<String, Entry> {
    let mut entries = HashMap::new();
    for (replica, value) in read_object(path, "restart budgets") {
        match serde_json::from_value::<Entry>(value) {
            Ok(e) => {
                entries.insert(replica, e);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), replica = %crate::text::bounded(&replica, 128), error = %e, "skipping an unreadable restart budget entry")
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BudgetPolicy {
        BudgetPolicy {
            window: Duration::from_secs(600),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(5),
            stable_after: Duration::from_secs(10),
        }
    }

    fn wait(b: &RestartBudget, at: DateTime<Utc>) -> (u64, u32) {
        let x = b.backoff("r1", at);
        (x.wait.as_secs(), x.attempt)
    }

    #[test]
    fn backoff_grows_to_its_cap_and_never_runs_out() {
        let b = RestartBudget::load(policy(), None);
        let t0 = Utc::now();
        assert_eq!(
            wait(&b, t0),
            (0, 1),
            "the first restart of a streak waits for nothing"
        );
        b.record("web", "r1", t0);
        assert_eq!(wait(&b, t0), (2, 2));
        let t1 = t0 + chrono::Duration::seconds(1);
        assert_eq!(wait(&b, t1), (1, 2), "counted from the last restart");
        b.record("web", "r1", t1);
        assert_eq!(wait(&b, t1), (4, 3), "2 * 2^1");
        for _ in 0..50 {
            b.record("web", "r1", t1);
        }
        assert_eq!(wait(&b, t1), (5, 53), "capped, and never refused");
        assert_eq!(b.tries("r1"), 52);
        // Other replicas have their own streak.
        assert_eq!(b.backoff("r2", t1).attempt, 1);
        // Old restarts age out of the window.
        let later = t1 + chrono::Duration::seconds(601);
        assert_eq!(wait(&b, later), (0, 1));
    }

    #[test]
    fn only_a_stable_healthy_period_ends_a_streak_and_serving_ends_the_tries() {
        let b = RestartBudget::load(policy(), None);
        let t = Utc::now();
        for _ in 0..3 {
            b.record("web", "r1", t);
        }
        assert!(
            !b.settle_if_stable("r1", Duration::from_secs(2)),
            "healthy for 2 s: still a streak"
        );
        assert_eq!(b.backoff("r1", t).attempt, 4);
        assert!(b.served("r1"), "it served: its tries start again");
        assert_eq!(b.tries("r1"), 0);
        assert_eq!(
            b.backoff("r1", t).attempt,
            4,
            "serving alone keeps the backoff"
        );
        assert!(b.settle_if_stable("r1", Duration::from_secs(10)));
        assert_eq!(
            b.backoff("r1", t),
            Backoff {
                wait: Duration::ZERO,
                attempt: 1
            }
        );
        assert!(
            !b.settle_if_stable("r1", Duration::from_secs(60)),
            "nothing left to forget"
        );
        let off = RestartBudget::load(
            BudgetPolicy {
                stable_after: Duration::ZERO,
                ..policy()
            },
            None,
        );
        off.record("web", "r1", t);
        assert!(!off.settle_if_stable("r1", Duration::from_secs(3600)));
        assert!(off.reset("r1"), "an operator reset works regardless");
        assert!(!off.reset("r1"));
    }

    #[test]
    fn huge_windows_and_backoffs_do_not_overflow() {
        let b = RestartBudget::load(
            BudgetPolicy {
                window: Duration::MAX,
                backoff_base: Duration::MAX,
                backoff_max: Duration::MAX,
                stable_after: Duration::MAX,
            },
            None,
        );
        let t = Utc::now();
        for _ in 0..40 {
            b.record("web", "r1", t);
        }
        assert_eq!(b.backoff("r1", t).attempt, 41);
        assert!(!b.settle_if_stable("r1", Duration::from_secs(1)));
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "budget-{tag}-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn budgets_survive_a_restart_of_the_agent() {
        let dir = tempdir("restart");
        let path = dir.join("budget.json");
        let now = Utc::now();
        {
            let b = RestartBudget::open(policy(), Some(path.clone())).await;
            for _ in 0..3 {
                b.record("web", "r1", now);
            }
            b.record("web", "r2", now);
            b.flush().await;
        }
        let b = RestartBudget::open(policy(), Some(path.clone())).await;
        assert_eq!(b.backoff("r1", now).attempt, 4);
        assert_eq!(b.tries("r1"), 3);
        // An operator reset is persisted too.
        assert!(b.reset("r1"));
        b.flush().await;
        drop(b);
        let b = RestartBudget::open(policy(), Some(path.clone())).await;
        assert_eq!(b.backoff("r1", now).attempt, 1);
        assert_eq!(b.backoff("r2", now).attempt, 2);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_damaged_file_loses_only_what_it_cannot_parse() {
        let dir = tempdir("damaged");
        let path = dir.join("budget.json");
        let now = Utc::now();
        let ok = serde_json::json!({"service": "web", "attempts": [now, now]});
        let text = serde_json::json!({
            "r1": ok,
            "r2": {"service": "web", "attempts": "yesterday"},
            "r3": 42
        });
        std::fs::write(&path, text.to_string()).unwrap();
        // Leftovers of a writer that crashed between create and rename.
        std::fs::write(dir.join("budget.json.tmp.1.7"), b"{\"r1\": {\"serv").unwrap();
        let b = RestartBudget::open(policy(), Some(path.clone())).await;
        assert_eq!(
            b.backoff("r1", now).attempt,
            3,
            "an older file (no tries) still reads"
        );
        assert_eq!(b.backoff("r2", now).attempt, 1);
        assert!(
            !dir.join("budget.json.tmp.1.7").exists(),
            "stale temporary removed"
        );

        for torn in [
            &b"not json"[..],
            b"{\"r1\": {\"service\": \"we",
            b"\xff\xfe",
            b"",
        ] {
            std::fs::write(&path, torn).unwrap();
            let b = RestartBudget::open(policy(), Some(path.clone())).await;
            assert_eq!(b.backoff("r1", now).attempt, 1);
            b.record("web", "r9", now);
            b.flush().await;
            assert!(
                serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap()).is_ok(),
                "rewritten whole"
            );
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn concurrent_writers_never_share_a_temporary_file() {
        let dir = tempdir("concurrent");
        let path = dir.join("budget.json");
        let now = Utc::now();
        // Two budgets on one file (two agents, or an old and a new one) and many threads each.
        let budgets = [
            Arc::new(RestartBudget::load(policy(), Some(path.clone()))),
            Arc::new(RestartBudget::load(policy(), Some(path.clone()))),
        ];
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let b = budgets[n % 2].clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        b.record(&format!("svc{n}"), &format!("r{n}-{i}"), now);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for b in &budgets {
            b.flush().await;
        }
        let bytes = std::fs::read(&path).unwrap();
        let map: HashMap<String, Entry> = serde_json::from_slice(&bytes).unwrap();
        assert!(
            map.len() >= 200,
            "one budget's complete state: {}",
            map.len()
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "budget.json")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        std::fs::remove_dir_all(dir).ok();
    }

    /// A budget file that cannot be written is a fault to report, not a reason to stop: the
    /// budgets work in memory, the fault is said at once (not at the first restart), and it clears
    /// when a write succeeds again.
    #[tokio::test]
    async fn an_unwritable_budget_file_is_a_reported_fault() {
        // A path under a regular file: ENOTDIR, whoever runs the test (root included).
        let b = RestartBudget::open(
            policy(),
            Some(PathBuf::from("/proc/self/status/restart-budget.json")),
        )
        .await;
        let fault = b.fault().expect("reported at start");
        assert!(fault.contains("restart-budget.json"), "{fault}");
        let now = Utc::now();
        b.record("web", "r1", now);
        b.flush().await;
        assert!(b.fault().is_some(), "still failing after a write");
        assert_eq!(
            b.backoff("r1", now).attempt,
            2,
            "the budgets still work in memory"
        );

        let dir = std::env::temp_dir().join(format!("budget-fault-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = RestartBudget::open(policy(), Some(dir.join("budget.json"))).await;
        assert_eq!(ok.fault(), None);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "the probe leaves nothing"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
