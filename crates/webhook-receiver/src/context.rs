//! What the engine, the diagnosis and the tools share across runs: the runtime, the prober, the
//! budgets and history, the clock, and what the agent knows about recent container events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::budget::RestartBudget;
use crate::clock::Clock;
use crate::history::History;
use crate::metrics::Metrics;
use crate::probe::Prober;
use crate::runtime::ContainerRuntime;

pub struct Context {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub prober: Arc<dyn Prober>,
    pub budget: Arc<RestartBudget>,
    pub history: Arc<History>,
    pub metrics: Metrics,
    pub clock: Clock,
    pub dry_run: bool,
    /// `RESTART_STABLE_SECS`.
    pub stable_after: Duration,
    /// How long a restarted replica has to serve again.
    pub verify_timeout: Duration,
    pub own: OwnActions,
    pub stops: StopMarks,
    pub outages: DaemonOutages,
}

/// Entries older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(300);

/// The agent's own restarts of running replicas, by container id: the `die` (and `stop`) events
/// a restart causes are not a new failure. Keyed by container and time: an event counts as the
/// agent's own only between the start of its restart and the container's new start, so a
/// genuine death right after the restart is still seen.
#[derive(Default)]
pub struct OwnActions(Mutex<HashMap<String, OwnRestart>>);

/// When the restart began, and the container's new start once it is done.
type OwnRestart = (DateTime<Utc>, Option<DateTime<Utc>>);

impl OwnActions {
    /// A restart of `id` begins.
    pub fn begin(&self, id: &str, at: DateTime<Utc>) {
        let mut m = self.0.lock().expect("own actions lock");
        let horizon = at - chrono::Duration::from_std(FORGET_AFTER).unwrap_or_default();
        m.retain(|_, (b, _)| *b > horizon);
        m.insert(id.to_string(), (at, None));
    }

    /// The restart of `id` is done; the container's new life began at `started_at`.
    pub fn end(&self, id: &str, started_at: DateTime<Utc>) {
        if let Some(entry) = self.0.lock().expect("own actions lock").get_mut(id) {
            entry.1 = Some(started_at);
        }
    }

    /// Whether an event of container `id` at `at` came from the agent's own restart.
    pub fn covers(&self, id: &str, at: DateTime<Utc>) -> bool {
        self.0
            .lock()
            .expect("own actions lock")
            .get(id)
            .is_some_and(|(begin, new_start)| at >= *begin && new_start.is_none_or(|s| at < s))
    }
}

/// `stop` events seen, by container id: the container was asked to stop (`docker stop`,
/// `docker compose stop`), whatever its exit code.
#[derive(Default)]
pub struct StopMarks(Mutex<HashMap<String, DateTime<Utc>>>);

impl StopMarks {
    pub fn mark(&self, id: &str, at: DateTime<Utc>) {
        let mut m = self.0.lock().expect("stop marks lock");
        if m.len() > 10_000 {
            // Bounded whatever happens: the oldest marks matter least.
            let oldest = m.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        m.insert(id.to_string(), at);
    }

    pub fn get(&self, id: &str) -> Option<DateTime<Utc>> {
        self.0.lock().expect("stop marks lock").get(id).copied()
    }
}

/// Times the Docker daemon itself was down, as the event stream saw it: from the stream's end to
/// the first successful reconnect, when a reconnect attempt failed in between. A replica that
/// exited 0/143 in such a window was stopped by the daemon going down, not by an operator, and
/// is started again (as Docker's `unless-stopped` would).
#[derive(Default)]
pub struct DaemonOutages(Mutex<std::collections::VecDeque<(DateTime<Utc>, DateTime<Utc>)>>);

impl DaemonOutages {
    pub fn record(&self, from: DateTime<Utc>, to: DateTime<Utc>) {
        let mut w = self.0.lock().expect("outages lock");
        if w.len() >= 16 {
            w.pop_front();
        }
        w.push_back((from, to));
    }

    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        self.0
            .lock()
            .expect("outages lock")
            .iter()
            .any(|(from, to)| at >= *from && at <= *to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_actions_cover_their_window_only() {
        let own = OwnActions::default();
        let t = Utc::now();
        let s = |ms: i64| t + chrono::Duration::milliseconds(ms);
        own.begin("c1", t);
        assert!(own.covers("c1", s(500)), "in flight");
        assert!(!own.covers("c1", s(-1)), "before the restart");
        own.end("c1", s(1000));
        assert!(own.covers("c1", s(800)), "the die of the restart");
        assert!(
            !own.covers("c1", s(1001)),
            "a death after the new start is a real one"
        );
        assert!(!own.covers("c2", s(800)));
    }
}
