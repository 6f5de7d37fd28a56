//! Docker's event stream as the run recorded it (`docker events --format '{{json .}}'`), reduced to
//! crashes and recoveries of the healed service.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct RawEvent {
    #[serde(rename = "Type", default)]
    typ: String,
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor", default)]
    actor: RawActor,
    #[serde(rename = "timeNano", default)]
    time_nano: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RawActor {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: HashMap<String, String>,
}

/// One container event, times in seconds since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: f64,
    pub action: String,
    pub id: String,
    pub name: String,
    pub service: String,
    pub exit_code: Option<i64>,
    /// A `docker compose run` container (the test's own load generator), not a service replica.
    pub oneoff: bool,
}

/// Parses JSON lines; lines that are not container events are skipped.
pub fn parse(text: &str) -> Vec<Event> {
    let mut out: Vec<Event> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<RawEvent>(l).ok())
        .filter(|e| e.typ == "container")
        .map(|e| Event {
            oneoff: e
                .actor
                .attributes
                .get("com.docker.compose.oneoff")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            time: e.time_nano as f64 / 1e9,
            action: e.action,
            service: e
                .actor
                .attributes
                .get("com.docker.compose.service")
                .cloned()
                .unwrap_or_default(),
            name: e.actor.attributes.get("name").cloned().unwrap_or_default(),
            exit_code: e
                .actor
                .attributes
                .get("exitCode")
                .and_then(|c| c.parse().ok()),
            id: e.actor.id,
        })
        .collect();
    out.sort_by(|a, b| a.time.total_cmp(&b.time));
    out
}

/// A replica that died, and when (if) it was healthy again.
#[derive(Debug, Clone, PartialEq)]
pub struct Crash {
    pub name: String,
    pub died_at: f64,
    pub exit_code: Option<i64>,
    /// Docker reported an `oom` event for this container just before it died.
    pub oom_killed: bool,
    pub started_at: Option<f64>,
    pub healthy_at: Option<f64>,
}

impl Crash {
    pub fn recovery_seconds(&self) -> Option<f64> {
        self.healthy_at.map(|h| h - self.died_at)
    }
}

/// Crashes of `service` between `from` and `to`, each with the next start and next
/// `health_status: healthy` of the same container.
pub fn crashes(events: &[Event], service: &str, from: f64, to: f64) -> Vec<Crash> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.service == service && e.action == "die" && e.time >= from && e.time <= to
        })
        .map(|(i, die)| {
            let later = || events[i + 1..].iter().filter(|e| e.id == die.id);
            let oom_killed = events[..i]
                .iter()
                .rev()
                .take_while(|e| die.time - e.time <= 5.0)
                .any(|e| e.id == die.id && e.action == "oom");
            Crash {
                name: die.name.clone(),
                died_at: die.time,
                exit_code: die.exit_code,
                oom_killed,
                started_at: later().find(|e| e.action == "start").map(|e| e.time),
                healthy_at: later()
                    .find(|e| e.action == "health_status: healthy")
                    .map(|e| e.time),
            }
        })
        .collect()
}

/// For each crash, when every replica of `service` was healthy again: replicas seen in the run
/// start healthy (the stack was up and healthy when the run began), `die` and
/// `health_status: unhealthy` make one unhealthy, `health_status: healthy` healthy again.
pub fn all_healthy_after(events: &[Event], service: &str, crashes: &[Crash]) -> Vec<Option<f64>> {
    let replica = |e: &&Event| e.service == service && !e.oneoff;
    let mut healthy: HashMap<&str, bool> = events
        .iter()
        .filter(replica)
        .map(|e| (e.id.as_str(), true))
        .collect();
    // Times at which the whole service turned healthy again.
    let mut recovered_at = Vec::new();
    for e in events.iter().filter(replica) {
        let before = healthy.values().all(|h| *h);
        match e.action.as_str() {
            "die" | "health_status: unhealthy" => {
                healthy.insert(&e.id, false);
            }
            "health_status: healthy" => {
                healthy.insert(&e.id, true);
            }
            _ => continue,
        }
        if !before && healthy.values().all(|h| *h) {
            recovered_at.push(e.time);
        }
    }
    crashes
        .iter()
        .map(|c| recovered_at.iter().copied().find(|t| *t >= c.died_at))
        .collect()
}

/// `start`/`restart` events of containers NOT of `service` between `from` and `to`: the agent
/// must never cause any. The test's own one-off containers (`docker compose run`) do not count.
pub fn foreign_starts(events: &[Event], service: &str, from: f64, to: f64) -> Vec<Event> {
    events
        .iter()
        .filter(|e| e.time >= from && e.time <= to && e.service != service && !e.oneoff)
        .filter(|e| e.action == "start" || e.action == "restart")
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(action: &str, id: &str, service: &str, t: f64, exit: Option<&str>) -> String {
        let mut attrs = serde_json::json!({ "name": format!("p-{service}-{id}"), "com.docker.compose.service": service });
        if let Some(c) = exit {
            attrs["exitCode"] = c.into();
        }
        serde_json::json!({ "Type": "container", "Action": action, "Actor": { "ID": id, "Attributes": attrs },
                            "timeNano": (t * 1e9) as i64 })
        .to_string()
    }

    #[test]
    fn crashes_pair_with_their_own_recovery() {
        let text = [
            line("oom", "1", "webapp", 10.0, None),
            line("die", "1", "webapp", 10.1, Some("137")),
            line("die", "2", "webapp", 11.0, Some("137")), // killed, no oom event
            line("start", "1", "webapp", 11.5, None),
            line("health_status: healthy", "2", "webapp", 12.0, None), // stale, before 2 restarts? no: after die
            line("health_status: healthy", "1", "webapp", 13.0, None),
            line("start", "9", "nginx", 14.0, None),
            "not json".to_string(),
            line("die", "3", "webapp", 99.0, Some("137")),
        ]
        .join("\n");
        let events = parse(&text);
        let c = crashes(&events, "webapp", 0.0, 50.0);
        assert_eq!(c.len(), 2);
        assert!(c[0].oom_killed && !c[1].oom_killed);
        assert_eq!(c[0].exit_code, Some(137));
        assert!((c[0].recovery_seconds().unwrap() - 2.9).abs() < 1e-6);
        assert_eq!(c[0].started_at, Some(11.5));
        assert_eq!(c[1].started_at, None);
        assert_eq!(foreign_starts(&events, "webapp", 0.0, 50.0).len(), 1);
        // Replica 1 healthy at 13.0; replica 2 was healthy at 12.0: all healthy from 13.0.
        assert_eq!(
            all_healthy_after(&events, "webapp", &c),
            [Some(13.0), Some(13.0)]
        );
        assert_eq!(foreign_starts(&events, "webapp", 20.0, 50.0).len(), 0);
    }
}
