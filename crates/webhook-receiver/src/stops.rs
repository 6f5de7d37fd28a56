//! Who stopped a replica: what the agent knows, persisted, about stop requests.
//!
//! "Stopped on purpose" means someone asked: `docker stop`, `docker compose stop` (a `kill`
//! with SIGTERM and a `stop` event), compose's scale-down (it stops, then removes), or the
//! service's `healstack.action=off` label. A replica that exited without a request the agent can
//! attribute is restored, as Docker's `unless-stopped` would: that covers a daemon shutdown (a
//! host reboot, a Docker upgrade), which stops every container with no policy and leaves them
//! `exited (0)`, exactly like an operator's stop.
//!
//! How the two are told apart, from Docker's own data (the socket proxy lets the agent call
//! `/_ping`, `/version`, `/events`, `/containers/json` and per-container inspect/logs/stats, not
//! `/info`, so the daemon's start time is not available):
//! - A stop request the agent saw live on the event stream is recorded here, on disk, at once.
//!   So an operator's stop before a daemon restart (or before the agent's own restart) is still
//!   known afterwards.
//! - A stop the agent did not see (it was down, or its event stream was) is looked up in the
//!   daemon's event history (`/events?since=..&until=..`) for the life that ended. The daemon
//!   keeps its last 256 events in memory only: after a daemon restart that history is gone,
//!   which is the signal. A request found there cannot have been a daemon shutdown (the daemon
//!   that answers has been up since), so it is an operator's; one not found is not
//!   attributable, and the replica is restored. Healthchecks fill that history fast (each is
//!   three events: with this stack's 1-2 s healthchecks it reaches back some 15 s, measured on a
//!   busy daemon here): it catches what the agent missed for a moment, not for minutes. The live
//!   stream (`DOCKER_EVENTS`, on by default) is what sees an operator's stop; without it, a stop
//!   not looked at within seconds is restored.
//! - moby closes its API before it stops the containers (`cli.stop` closes the API; the
//!   containers are stopped after `serveAPIWait` returns), so the agent never sees the stops of a
//!   shutdown live. Should a daemon let a few through, a request seen in the `STOP_GRACE` before
//!   the agent lost contact with Docker (its event stream ended, a ping failed, or the agent
//!   itself stopped, as its heartbeat on disk says) is only a suspect, confirmed or dropped by the
//!   same history lookup once Docker answers again. The price: an operator's stop in those few
//!   seconds before a loss of contact may be restored.
//! - The agent's own stops (the stop half of a restart, and later its recycling of a replica)
//!   are recorded as its own and never count as someone asking.
//!
//! Exit codes alone prove nothing: a daemon shutdown and `docker stop` both end the webapp with
//! SIGTERM and exit 0; `State.FinishedAt` says when, not why.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::persist::{lock, read_object, Persister};

/// How long before the agent lost contact with Docker a stop request may have been the daemon's
/// own shutdown. Short: moby closes its API first, so none should ever be seen; the longer this
/// is, the more operator stops near a loss of contact depend on the (short) event history.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
/// How often the time of the last contact with Docker is written down (the heartbeat that tells
/// the next start of the agent when it stopped watching).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// A `stop` event comes just after the death it requested.
const STOP_AFTER_DEATH: chrono::Duration = chrono::Duration::seconds(2);
/// Bounds: at most this many containers remembered (the oldest entries go first).
const MAX_ENTRIES: usize = 10_000;
const MAX_LOSSES: usize = 16;

/// A stop request for a container.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Mark {
    at: DateTime<Utc>,
    /// Found in Docker's own event history (not only seen live).
    #[serde(default)]
    confirmed: bool,
}

/// One of the agent's own stops or restarts of a container, from its request until the
/// container's new start (open while it is in flight).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Own {
    begin: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Serialize)]
struct State {
    marks: HashMap<String, Mark>,
    own: HashMap<String, Own>,
    /// The last time Docker answered the agent.
    contact_until: Option<DateTime<Utc>>,
    /// When contact was lost, while it is still lost: written down at once, so that an agent
    /// stopped meanwhile (a daemon shutdown stops it too) starts again knowing when the loss
    /// began, not only its last heartbeat, which may be `HEARTBEAT_EVERY` older. A suspect is a
    /// stop seen in the `STOP_GRACE` before the loss; measured from a stale heartbeat, an
    /// operator's stop seconds before a reboot would be taken for the shutdown and undone.
    #[serde(skip_serializing_if = "Option::is_none")]
    lost_at: Option<DateTime<Utc>>,
    /// Times contact was lost, with when it came back (this process, and the end of the
    /// previous one).
    #[serde(skip)]
    losses: VecDeque<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    #[serde(skip)]
    contact_written: Option<DateTime<Utc>>,
    /// Lives already looked up in Docker's history without finding a request.
    #[serde(skip)]
    looked_up: HashSet<(String, DateTime<Utc>)>,
}

/// What is known of a stop request in one life of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// Someone asked, at this time.
    Asked(DateTime<Utc>),
    /// A request seen just before contact with Docker was lost: maybe the daemon's shutdown.
    /// Docker's history decides.
    Suspect(DateTime<Utc>),
    /// Nothing known: Docker's history decides, once.
    Unknown,
    /// Looked up already, nothing found: nobody the agent can name asked.
    NotAsked,
}

pub struct StopLedger {
    state: Arc<Mutex<State>>,
    persist: Option<Persister>,
}

impl StopLedger {
    /// Nothing persisted (tests, and an agent without an incident log).
    pub fn in_memory() -> Self {
        StopLedger {
            state: Arc::default(),
            persist: None,
        }
    }

    /// Reads `path` (blocking) and keeps it current. The end of the previous run (its last
    /// heartbeat) counts as a loss of contact, until `now`.
    pub fn load(path: PathBuf, now: DateTime<Utc>) -> Self {
        let mut state = State::default();
        let mut object = read_object(&path, "stops seen");
        let mut section = |name: &str| match object.remove(name) {
            Some(serde_json::Value::Object(m)) => m,
            _ => Default::default(),
        };
        for (id, v) in section("marks") {
            match serde_json::from_value(v) {
                Ok(m) => {
                    state.marks.insert(id, m);
                }
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable stop mark"),
            }
        }
        for (id, v) in section("own") {
            match serde_json::from_value(v) {
                Ok(o) => {
                    state.own.insert(id, o);
                }
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable own-action entry"),
            }
        }
        state.contact_until = object
            .remove("contact_until")
            .and_then(|v| serde_json::from_value(v).ok());
        let lost_at: Option<DateTime<Utc>> = object
            .remove("lost_at")
            .and_then(|v| serde_json::from_value(v).ok());
        // The previous run's end is a loss: from when it saw contact go, or else from its last
        // heartbeat (it stopped without noticing a loss).
        if let Some(since) = lost_at.or(state.contact_until) {
            state.losses.push_back((since, Some(now)));
        }
        state.contact_written = state.contact_until;
        let state = Arc::new(Mutex::new(state));
        StopLedger {
            persist: Some(Persister::start(path, state.clone(), "stops seen")),
            state,
        }
    }

    /// [`StopLedger::load`] on the blocking pool.
    pub async fn open(path: Option<PathBuf>, now: DateTime<Utc>) -> Self {
        let Some(path) = path else {
            return Self::in_memory();
        };
        tokio::task::spawn_blocking(move || Self::load(path, now))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "loading the stops seen failed; starting empty");
                Self::in_memory()
            })
    }

    fn persist(&self) {
        if let Some(p) = &self.persist {
            p.schedule();
        }
    }

    /// Waits until the state is on disk (shutdown, tests).
    pub async fn flush(&self) {
        if let Some(p) = &self.persist {
            p.flush().await;
        }
    }

    fn mark(&self, id: &str, at: DateTime<Utc>, confirmed: bool) {
        {
            let mut s = lock(&self.state);
            if s.marks.len() >= MAX_ENTRIES && !s.marks.contains_key(id) {
                let oldest = s
                    .marks
                    .iter()
                    .min_by_key(|(_, m)| m.at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    s.marks.remove(&k);
                }
            }
            s.marks.insert(id.to_string(), Mark { at, confirmed });
        }
        self.persist();
    }

    /// A stop request seen live on the event stream (`kill` with SIGTERM, `stop`).
    /// Why the stops file cannot be written right now, if it cannot (a fault for `/healthz`).
    pub fn fault(&self) -> Option<String> {
        self.persist.as_ref().and_then(Persister::fault)
    }

    pub fn seen(&self, id: &str, at: DateTime<Utc>) {
        self.mark(id, at, false);
    }

    /// A stop request found in Docker's event history: an operator's, for sure.
    pub fn found(&self, id: &str, at: DateTime<Utc>) {
        self.mark(id, at, true);
    }

    /// A suspect request that Docker's history does not hold: it was the daemon's shutdown.
    pub fn forget(&self, id: &str) {
        if lock(&self.state).marks.remove(id).is_some() {
            self.persist();
        }
    }

    /// What is known of a stop request in the life of `id` that began at `started_at` and, for
    /// a container that is down, ended at `finished_at`.
    pub fn attribution(
        &self,
        id: &str,
        started_at: Option<DateTime<Utc>>,
        finished_at: Option<DateTime<Utc>>,
    ) -> Attribution {
        let s = lock(&self.state);
        let in_life = |at: DateTime<Utc>| {
            started_at.is_none_or(|st| at >= st)
                && finished_at.is_none_or(|f| at <= f + STOP_AFTER_DEATH)
        };
        if let Some(m) = s.marks.get(id).filter(|m| in_life(m.at)) {
            let grace = chrono::Duration::from_std(STOP_GRACE).unwrap_or_default();
            let suspect = !m.confirmed
                && s.losses
                    .iter()
                    .any(|(lost, back)| m.at >= *lost - grace && back.is_none_or(|b| m.at <= b));
            return if suspect {
                Attribution::Suspect(m.at)
            } else {
                Attribution::Asked(m.at)
            };
        }
        match finished_at {
            Some(f) if s.looked_up.contains(&(id.to_string(), f)) => Attribution::NotAsked,
            _ => Attribution::Unknown,
        }
    }

    /// The life of `id` that ended at `finished_at` was looked up in Docker's history: no request.
    pub fn not_found(&self, id: &str, finished_at: DateTime<Utc>) {
        let mut s = lock(&self.state);
        if s.looked_up.len() >= MAX_ENTRIES {
            s.looked_up.clear();
        }
        s.looked_up.insert((id.to_string(), finished_at));
    }

    /// The agent is about to stop (or restart) `id` itself.
    pub fn begin_own(&self, id: &str, at: DateTime<Utc>) {
        {
            let mut s = lock(&self.state);
            if s.own.len() >= MAX_ENTRIES && !s.own.contains_key(id) {
                let oldest = s
                    .own
                    .iter()
                    .min_by_key(|(_, o)| o.begin)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    s.own.remove(&k);
                }
            }
            s.own.insert(
                id.to_string(),
                Own {
                    begin: at,
                    end: None,
                },
            );
        }
        self.persist();
    }

    /// The agent's stop or restart of `id` is done; its new life began at `started_at` (or the
    /// action ended then).
    pub fn end_own(&self, id: &str, started_at: DateTime<Utc>) {
        if let Some(o) = lock(&self.state).own.get_mut(id) {
            o.end = Some(started_at);
        }
        self.persist();
    }

    /// Whether an event of `id` at `at` came from the agent's own stop or restart: between its
    /// request and the container's new start, so a real death right after is still seen.
    pub fn covers_own(&self, id: &str, at: DateTime<Utc>) -> bool {
        lock(&self.state)
            .own
            .get(id)
            .is_some_and(|o| at >= o.begin && o.end.is_none_or(|e| at < e))
    }

    /// Docker answered: contact (again). Written down every `HEARTBEAT_EVERY`, so the next start
    /// of the agent knows when this one stopped watching.
    pub fn contact(&self, now: DateTime<Utc>) {
        let write = {
            let mut s = lock(&self.state);
            if let Some(last) = s.losses.back_mut() {
                if last.1.is_none() {
                    last.1 = Some(now);
                }
            }
            s.contact_until = Some(now);
            let every = chrono::Duration::from_std(HEARTBEAT_EVERY).unwrap_or_default();
            let due =
                s.lost_at.take().is_some() || s.contact_written.is_none_or(|w| now - w >= every);
            if due {
                s.contact_written = Some(now);
            }
            due
        };
        if write {
            self.persist();
        }
    }

    /// Contact with Docker was lost at `at` (its event stream ended, a ping failed).
    pub fn lost(&self, at: DateTime<Utc>) {
        {
            let mut s = lock(&self.state);
            if s.losses.back().is_some_and(|(_, back)| back.is_none()) {
                return;
            }
            if s.losses.len() >= MAX_LOSSES {
                s.losses.pop_front();
            }
            s.losses.push_back((at, None));
            s.lost_at = Some(at);
        }
        self.persist();
    }

    /// At shutdown: the heartbeat is written as of now.
    pub async fn close(&self, now: DateTime<Utc>) {
        {
            let mut s = lock(&self.state);
            if s.losses.back().is_none_or(|(_, back)| back.is_some()) {
                s.contact_until = Some(now);
            }
        }
        self.persist();
        self.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_request_counts_for_the_life_it_ended() {
        let l = StopLedger::in_memory();
        l.seen("c1", t(100));
        assert_eq!(
            l.attribution("c1", Some(t(50)), Some(t(101))),
            Attribution::Asked(t(100))
        );
        assert_eq!(
            l.attribution("c1", Some(t(150)), Some(t(200))),
            Attribution::Unknown,
            "a stop of an earlier life does not count"
        );
        assert_eq!(
            l.attribution("c1", Some(t(50)), None),
            Attribution::Asked(t(100)),
            "running: being stopped"
        );
        assert_eq!(
            l.attribution("c2", Some(t(50)), Some(t(60))),
            Attribution::Unknown
        );
        l.not_found("c2", t(60));
        assert_eq!(
            l.attribution("c2", Some(t(50)), Some(t(60))),
            Attribution::NotAsked
        );
    }

    #[test]
    fn requests_just_before_contact_was_lost_are_suspects_until_history_decides() {
        let l = StopLedger::in_memory();
        l.contact(t(0));
        l.seen("operator", t(10));
        l.seen("shutdown", t(98));
        l.lost(t(100));
        l.contact(t(130));
        l.seen("after", t(140));
        let life = |id| l.attribution(id, Some(t(1)), Some(t(200)));
        assert_eq!(
            life("operator"),
            Attribution::Asked(t(10)),
            "well before the loss"
        );
        assert_eq!(life("shutdown"), Attribution::Suspect(t(98)));
        assert_eq!(
            life("after"),
            Attribution::Asked(t(140)),
            "after contact came back"
        );
        l.found("shutdown", t(98));
        assert_eq!(
            life("shutdown"),
            Attribution::Asked(t(98)),
            "Docker still holds it"
        );
        l.forget("shutdown");
        assert_eq!(life("shutdown"), Attribution::Unknown);
    }

    #[test]
    fn the_agents_own_stops_are_its_own_until_the_new_start() {
        let l = StopLedger::in_memory();
        l.begin_own("c1", t(10));
        assert!(l.covers_own("c1", t(11)));
        assert!(!l.covers_own("c1", t(9)));
        l.end_own("c1", t(12));
        assert!(l.covers_own("c1", t(11)));
        assert!(
            !l.covers_own("c1", t(13)),
            "a death after the new start is a real one"
        );
        assert!(!l.covers_own("c2", t(11)));
    }

    #[tokio::test]
    async fn after_a_restart_the_suspects_are_those_just_before_the_loss_not_the_last_heartbeat() {
        // The daemon-restart case as CI saw it: a heartbeat at 0, an operator's stop at 5, the
        // event stream ends at 8.2 (the daemon shuts down), the agent is stopped at 8.3 with
        // the loss still open, and starts again on the new daemon.
        let dir = std::env::temp_dir().join(format!(
            "stops-loss-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stops.json");
        let ms = |m: i64| t(0) + chrono::Duration::milliseconds(m);
        {
            let l = StopLedger::open(Some(path.clone()), t(0)).await;
            l.contact(t(0));
            l.seen("operator", t(5));
            l.seen("shutdown", ms(7_500));
            l.lost(ms(8_200));
            l.close(ms(8_300)).await;
        }
        let l = StopLedger::open(Some(path.clone()), t(30)).await;
        let life = |id| l.attribution(id, Some(t(1)), Some(t(9)));
        assert_eq!(
            life("operator"),
            Attribution::Asked(t(5)),
            "3.2 s before the loss: outside the grace, whatever the heartbeat's age"
        );
        assert_eq!(life("shutdown"), Attribution::Suspect(ms(7_500)));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn what_was_seen_survives_a_restart_of_the_agent_and_its_end_is_a_loss() {
        let dir = std::env::temp_dir().join(format!(
            "stops-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stops.json");
        {
            let l = StopLedger::open(Some(path.clone()), t(0)).await;
            l.contact(t(0));
            l.seen("operator", t(10));
            l.seen("late", t(58));
            l.contact(t(50));
            l.close(t(60)).await;
        }
        let l = StopLedger::open(Some(path.clone()), t(300)).await;
        let life = |id| l.attribution(id, Some(t(1)), Some(t(70)));
        assert_eq!(life("operator"), Attribution::Asked(t(10)));
        assert_eq!(
            life("late"),
            Attribution::Suspect(t(58)),
            "seen just before the agent stopped watching"
        );
        // A damaged file costs what it held, never the start.
        std::fs::write(
            &path,
            b"{\"marks\": {\"a\": 3, \"b\": {\"at\": \"2027-01-15T08:00:10Z\"}}",
        )
        .unwrap();
        drop(l);
        let l = StopLedger::open(Some(path.clone()), t(300)).await;
        assert_eq!(l.attribution("a", None, None), Attribution::Unknown);
        std::fs::write(
            &path,
            b"{\"marks\": {\"b\": {\"at\": \"2027-01-15T08:00:10Z\"}}}",
        )
        .unwrap();
        drop(l);
        let l = StopLedger::open(Some(path.clone()), t(300)).await;
        assert!(matches!(
            l.attribution("b", None, None),
            Attribution::Asked(_)
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
