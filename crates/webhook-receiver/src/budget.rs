//! Restart budgets: at most `max` restarts of one replica within `window`, with growing backoff
//! between attempts. A spent budget is an open circuit breaker: the replica is left alone (a crash
//! loop) until old attempts age out of the window, or an operator resets it.
//!
//! Attempts are persisted to a small JSON file so a restarted agent keeps them. Writes go through
//! one writer thread (never the async runtime's threads) that coalesces bursts: each write is a
//! unique temporary file, fsync, rename over the old file, fsync of the directory, as Prometheus
//! and etcd write their snapshots. Loading skips what it cannot parse, entry by entry, with a
//! warning: a damaged file costs at most the budgets it held, never the agent's start.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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
    /// only after a stable period. Zero disables the reset.
    pub stable_after: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BudgetDecision {
    /// May restart after waiting this long (zero for the first attempt).
    Allowed { wait: Duration, attempt: u32 },
    /// Budget spent: `attempts` restarts within the window.
    Exhausted { attempts: u32 },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Entry {
    service: String,
    attempts: Vec<DateTime<Utc>>,
}

/// Largest budget file read at start (a few hundred bytes per replica; anything near this is not ours).
const MAX_FILE: u64 = 16 << 20;

pub struct RestartBudget {
    policy: BudgetPolicy,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    persist: Option<Persister>,
}

impl RestartBudget {
    /// Loads earlier attempts from `path` when it exists (blocking: for tests and sync callers;
    /// the agent uses [`RestartBudget::open`]). What cannot be read is reported and skipped.
    pub fn load(policy: BudgetPolicy, path: Option<PathBuf>) -> Self {
        let entries = path.as_deref().map(read_entries).unwrap_or_default();
        let entries = Arc::new(Mutex::new(entries));
        let persist = path.map(|p| Persister::start(p, entries.clone()));
        RestartBudget {
            policy,
            entries,
            persist,
        }
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
                    persist: path.map(|p| Persister::start(p, entries.clone())),
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

    /// May `replica` be restarted now, and after how long a wait?
    pub fn check(&self, replica: &str, now: DateTime<Utc>) -> BudgetDecision {
        let entries = lock(&self.entries);
        let since = self.window_start(now);
        let recent: Vec<_> = entries
            .get(replica)
            .map(|e| e.attempts.iter().filter(|t| **t > since).copied().collect())
            .unwrap_or_default();
        let n = recent.len() as u32;
        if n >= self.policy.max_restarts {
            return BudgetDecision::Exhausted { attempts: n };
        }
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
        BudgetDecision::Allowed {
            wait,
            attempt: n + 1,
        }
    }

    /// Records an attempt and persists the budgets (in the background).
    pub fn record(&self, service: &str, replica: &str, at: DateTime<Utc>) {
        {
            let mut entries = lock(&self.entries);
            let since = self.window_start(at);
            let e = entries.entry(replica.to_string()).or_default();
            e.service = service.to_string();
            e.attempts.retain(|t| *t > since);
            e.attempts.push(at);
            entries.retain(|_, e| e.attempts.iter().any(|t| *t > since));
        }
        self.persist();
    }

    /// Forgets `replica`'s attempts when it was running and healthy for at least `stable_after`
    /// before it failed (`healthy_for`): a replica that served, then died under load, is not a
    /// crash loop. Returns true when there was a budget to forget.
    pub fn reset_if_stable(&self, replica: &str, healthy_for: Duration) -> bool {
        if self.policy.stable_after.is_zero() || healthy_for < self.policy.stable_after {
            return false;
        }
        self.reset(replica)
    }

    /// Forgets `replica`'s attempts (an operator's reset, or a stable run). True when it had any.
    pub fn reset(&self, replica: &str) -> bool {
        let removed = lock(&self.entries).remove(replica).is_some();
        if removed {
            self.persist();
        }
        removed
    }

    /// Replicas of `service` whose budget is spent right now.
    pub fn open_breakers(&self, service: &str, now: DateTime<Utc>) -> usize {
        let entries = lock(&self.entries);
        let since = self.window_start(now);
        entries
            .values()
            .filter(|e| e.service == service)
            .filter(|e| {
                e.attempts.iter().filter(|t| **t > since).count() as u32 >= self.policy.max_restarts
            })
            .count()
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

/// A poisoned lock only means another thread panicked while holding it; the data is still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the budget file, entry by entry.
fn read_entries(path: &Path) -> HashMap<String, Entry> {
    remove_stale_temporaries(path);
    let bytes = match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE => {
            tracing::warn!(path = %path.display(), bytes = m.len(), "restart budget file is too large to be ours; starting empty");
            return HashMap::new();
        }
        Ok(_) => std::fs::read(path),
        Err(e) => Err(e),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read restart budget file; starting empty");
            return HashMap::new();
        }
    };
    let map = match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "restart budget file unreadable; starting empty");
            return HashMap::new();
        }
    };
    let mut entries = HashMap::new();
    for (replica, value) in map {
        match serde_json::from_value::<Entry>(value) {
            Ok(e) => {
                entries.insert(replica, e);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), replica = %replica.chars().take(128).collect::<String>(), error = %e, "skipping an unreadable restart budget entry")
            }
        }
    }
    entries
}

/// Temporary files a crash left behind (`restart-budget.json.tmp.*`).
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (dir_of(path), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.tmp.", name.to_string_lossy());
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in list.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn dir_of(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(d) if d.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

/// The writer thread and what it shares with the budget.
struct Persister {
    signal: Arc<Signal>,
    written: tokio::sync::watch::Sender<u64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Signal {
    state: Mutex<WriterState>,
    wake: Condvar,
}

#[derive(Default)]
struct WriterState {
    /// Changes made so far; the writer catches up to the latest with one write.
    wanted: u64,
    stop: bool,
}

impl Persister {
    fn start(path: PathBuf, entries: Arc<Mutex<HashMap<String, Entry>>>) -> Self {
        let signal = Arc::new(Signal::default());
        let (written, _) = tokio::sync::watch::channel(0u64);
        let thread = {
            let (signal, written) = (signal.clone(), written.clone());
            std::thread::Builder::new()
                .name("budget-writer".into())
                .spawn(move || writer(path, entries, signal, written))
                .map_err(|e| tracing::error!(error = %e, "cannot start the restart budget writer; budgets stay in memory"))
                .ok()
        };
        Persister {
            signal,
            written,
            thread,
        }
    }

    fn schedule(&self) {
        lock(&self.signal.state).wanted += 1;
        self.signal.wake.notify_one();
    }

    async fn flush(&self) {
        if self.thread.is_none() {
            return;
        }
        let target = lock(&self.signal.state).wanted;
        let mut rx = self.written.subscribe();
        let _ = rx.wait_for(|w| *w >= target).await;
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        lock(&self.signal.state).stop = true;
        self.signal.wake.notify_one();
        // The writer finishes the change in hand (a small file) and ends.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer(
    path: PathBuf,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    signal: Arc<Signal>,
    written: tokio::sync::watch::Sender<u64>,
) {
    let mut done = 0u64;
    loop {
        let target = {
            let mut state = lock(&signal.state);
            while state.wanted == done && !state.stop {
                state = signal.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.wanted == done {
                return;
            }
            state.wanted
        };
        let snapshot = serde_json::to_vec(&*lock(&entries));
        let result = snapshot
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(&path, &bytes));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not persist restart budgets (kept in memory; retried with the next change)");
        }
        done = target;
        written.send_replace(done);
    }
}

/// A unique temporary file next to `path`, written and synced, renamed over `path`, and the
/// directory synced, so `path` is always either the old or the new whole file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = dir_of(path).unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the budget path names no file"))?;
    let tmp = dir.join(format!(
        "{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Not every filesystem can sync a directory; the rename is done either way.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
    fn only_a_stable_healthy_period_resets_the_budget() {
        let b = RestartBudget::load(policy(), None);
        let t = Utc::now();
        for _ in 0..3 {
            b.record("web", "r1", t);
        }
        assert!(
            !b.reset_if_stable("r1", Duration::ZERO),
            "never healthy: a crash loop"
        );
        assert!(
            !b.reset_if_stable("r1", Duration::from_secs(2)),
            "healthy for 2 s, then dead on its first real request: still a crash loop"
        );
        assert_eq!(b.check("r1", t), BudgetDecision::Exhausted { attempts: 3 });
        assert!(b.reset_if_stable("r1", Duration::from_secs(10)));
        assert_eq!(
            b.check("r1", t),
            BudgetDecision::Allowed {
                wait: Duration::ZERO,
                attempt: 1
            }
        );
        assert!(
            !b.reset_if_stable("r1", Duration::from_secs(60)),
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
        assert!(!off.reset_if_stable("r1", Duration::from_secs(3600)));
        assert!(off.reset("r1"), "an operator reset works regardless");
        assert!(!off.reset("r1"));
    }

    #[test]
    fn huge_windows_and_backoffs_do_not_overflow() {
        let b = RestartBudget::load(
            BudgetPolicy {
                max_restarts: u32::MAX,
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
        assert!(matches!(
            b.check("r1", t),
            BudgetDecision::Allowed { attempt: 41, .. }
        ));
        assert_eq!(b.open_breakers("web", t), 0);
        assert!(!b.reset_if_stable("r1", Duration::from_secs(1)));
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
        assert_eq!(
            b.check("r1", now),
            BudgetDecision::Exhausted { attempts: 3 }
        );
        // An operator reset is persisted too.
        assert!(b.reset("r1"));
        b.flush().await;
        drop(b);
        let b = RestartBudget::open(policy(), Some(path.clone())).await;
        assert!(matches!(
            b.check("r1", now),
            BudgetDecision::Allowed { attempt: 1, .. }
        ));
        assert!(matches!(
            b.check("r2", now),
            BudgetDecision::Allowed { attempt: 2, .. }
        ));
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
        assert!(matches!(
            b.check("r1", now),
            BudgetDecision::Allowed { attempt: 3, .. }
        ));
        assert!(matches!(
            b.check("r2", now),
            BudgetDecision::Allowed { attempt: 1, .. }
        ));
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
            assert!(matches!(
                b.check("r1", now),
                BudgetDecision::Allowed { attempt: 1, .. }
            ));
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
}
