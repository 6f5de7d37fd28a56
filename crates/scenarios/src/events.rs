//! Docker's own event stream for the projects under test, and the agent's actions read from it:
//! every `start`/`restart`/`unpause`/... that the harness did not cause ([`agent_actions`]).
//! Docker is the witness here; the agent's incidents are checked against it, not trusted.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use crate::docker::{Op, PROJECT_LABEL, SERVICE_LABEL};

/// One container event, time in seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub time: f64,
    pub action: String,
    pub id: String,
    pub name: String,
    pub project: String,
    pub service: String,
    pub exit_code: Option<i64>,
    pub signal: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "Type", default)]
    typ: String,
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor", default)]
    actor: RawActor,
    #[serde(rename = "timeNano", default)]
    time_nano: i64,
}

#[derive(Default, Deserialize)]
struct RawActor {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: HashMap<String, String>,
}

/// Parses one `docker events --format '{{json .}}'` line; `None` for other types and for the
/// exec events of healthchecks.
pub fn parse_line(line: &str) -> Option<Event> {
    let raw: Raw = serde_json::from_str(line).ok()?;
    if raw.typ != "container" || raw.action.starts_with("exec_") {
        return None;
    }
    let attr = |k: &str| raw.actor.attributes.get(k).cloned();
    Some(Event {
        time: raw.time_nano as f64 / 1e9,
        action: raw.action.clone(),
        id: raw.actor.id.clone(),
        name: attr("name").unwrap_or_default(),
        project: attr(PROJECT_LABEL).unwrap_or_default(),
        service: attr(SERVICE_LABEL).unwrap_or_default(),
        exit_code: attr("exitCode").and_then(|c| c.parse().ok()),
        signal: attr("signal"),
    })
}

/// Follows `docker events` for the given projects in the background.
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    projects: Arc<Vec<String>>,
    raw: Arc<Mutex<std::fs::File>>,
    /// One `docker events` per connection: the stream ends when the daemon stops, and a
    /// restarted daemon has a new one ([`Recorder::resume`]).
    children: Mutex<Vec<tokio::process::Child>>,
}

impl Recorder {
    /// Starts following from `since` (seconds since the epoch; the daemon replays what happened
    /// since then, so nothing is missed while the stream connects). Raw lines go to `raw_log`.
    pub async fn start(projects: Vec<String>, since: f64, raw_log: &Path) -> Result<Recorder> {
        let raw = std::fs::File::create(raw_log)
            .with_context(|| format!("creating {}", raw_log.display()))?;
        let r = Recorder {
            events: Arc::default(),
            projects: Arc::new(projects),
            raw: Arc::new(Mutex::new(raw)),
            children: Mutex::default(),
        };
        r.follow(since)?;
        Ok(r)
    }

    /// Follows the stream again from `since`, after the daemon restarted (the old stream ended
    /// with it; the new daemon replays only what it saw itself). Events already recorded are
    /// not recorded twice.
    pub fn resume(&self, since: f64) -> Result<()> {
        self.follow(since)
    }

    fn follow(&self, since: f64) -> Result<()> {
        let mut child = tokio::process::Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=container",
                "--since",
                &format!("{since:.3}"),
                "--format",
                "{{json .}}",
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting docker events")?;
        let stdout = child.stdout.take().context("docker events stdout")?;
        let sink = self.events.clone();
        let projects = self.projects.clone();
        let raw = self.raw.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(e) = parse_line(&line) {
                    if projects.contains(&e.project) {
                        let mut events = sink.lock().expect("events lock");
                        if !events.contains(&e) {
                            let _ = writeln!(raw.lock().expect("raw log lock"), "{line}");
                            events.push(e);
                        }
                    }
                }
            }
        });
        self.children.lock().expect("children lock").push(child);
        Ok(())
    }

    /// Events at or after `from`, oldest first.
    pub fn since(&self, from: f64) -> Vec<Event> {
        let mut v: Vec<Event> = self
            .events
            .lock()
            .expect("events lock")
            .iter()
            .filter(|e| e.time >= from)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.time.total_cmp(&b.time));
        v
    }

    pub async fn stop(self) {
        let children = std::mem::take(&mut *self.children.lock().expect("children lock"));
        for mut c in children {
            let _ = c.kill().await;
        }
    }
}

/// What the agent did to a container, as Docker saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Start,
    Restart,
    Unpause,
    /// Anything else that changes a container (kill, stop, pause, create, destroy): never
    /// the agent's to do.
    Other(String),
}

impl ActionKind {
    pub fn label(&self) -> String {
        match self {
            ActionKind::Start => "start".into(),
            ActionKind::Restart => "restart".into(),
            ActionKind::Unpause => "unpause".into(),
            ActionKind::Other(a) => a.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentAction {
    pub time: f64,
    pub kind: ActionKind,
    pub container: String,
    pub project: String,
    pub service: String,
}

/// Events that change a container (the rest, like `die`, `oom`, health, are observations).
const CHANGES: &[&str] = &[
    "start", "restart", "unpause", "pause", "kill", "stop", "create", "destroy",
];
/// Grace after an operation returned for the events that trail it (a killed process's `die`).
const GRACE_S: f64 = 1.0;
/// Longest stop timeout a `docker restart` may take before its SIGKILL.
const RESTART_SPAN_S: f64 = 12.0;

/// Which events the harness caused: each operation explains at most one event per container
/// and action (two `kill`s: a stop's SIGTERM and, after its timeout, SIGKILL), inside its own
/// time window (plus a grace for the trailing `die`, `stop` and `destroy`). A start by the
/// agent just after the harness's own `docker run` stays the agent's.
pub fn by_harness(events: &[Event], ops: &[Op]) -> HashSet<usize> {
    let mut used: HashMap<(usize, String, String), usize> = HashMap::new();
    let mut out = HashSet::new();
    for (i, e) in events.iter().enumerate() {
        let grace = if matches!(e.action.as_str(), "die" | "stop" | "destroy") {
            GRACE_S
        } else {
            0.05
        };
        let hit = ops.iter().enumerate().find(|(k, op)| {
            let targets = op.containers.iter().any(|c| *c == e.name || *c == e.id)
                || op.project.as_deref() == Some(e.project.as_str());
            targets
                && e.time >= op.start - 0.05
                && e.time <= op.end + grace
                && op.kind.causes(&e.action)
                && used
                    .get(&(*k, e.name.clone(), e.action.clone()))
                    .copied()
                    .unwrap_or(0)
                    < if e.action == "kill" { 2 } else { 1 }
        });
        if let Some((k, _)) = hit {
            *used
                .entry((k, e.name.clone(), e.action.clone()))
                .or_default() += 1;
            out.insert(i);
        }
    }
    out
}

/// The agent's actions: container changes the harness did not cause, with the steps of one
/// `docker restart` (kill, die, stop, start, restart) folded into one `Restart`, and Docker's
/// own restart-policy starts (a start right after a death the harness did not cause, of a
/// container outside `healed_service`) left out. `events` must be in time order.
pub fn agent_actions(events: &[Event], ops: &[Op], healed_service: &str) -> Vec<AgentAction> {
    let harness = by_harness(events, ops);
    let own: Vec<&Event> = events
        .iter()
        .enumerate()
        .filter(|(i, _)| !harness.contains(i))
        .map(|(_, e)| e)
        .collect();
    let mut consumed: HashSet<usize> = HashSet::new();
    // Fold each restart's steps into it.
    for (i, e) in own.iter().enumerate() {
        if e.action != "restart" {
            continue;
        }
        let candidates: Vec<usize> = (0..i)
            .rev()
            .filter(|j| own[*j].name == e.name && !consumed.contains(j))
            .collect();
        let Some(&start) = candidates
            .iter()
            .find(|j| own[**j].action == "start" && e.time - own[**j].time <= 1.0)
        else {
            continue;
        };
        consumed.insert(start);
        let stop = candidates.iter().copied().find(|j| {
            *j < start
                && own[*j].action == "stop"
                && own[start].time - own[*j].time <= RESTART_SPAN_S
        });
        if let Some(stop) = stop {
            consumed.insert(stop);
            for &j in candidates.iter().filter(|j| **j < stop) {
                if own[stop].time - own[j].time > RESTART_SPAN_S || own[j].action == "start" {
                    break;
                }
                if own[j].action == "kill" {
                    consumed.insert(j);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (i, e) in own.iter().enumerate() {
        if consumed.contains(&i) || !CHANGES.contains(&e.action.as_str()) {
            continue;
        }
        if e.action == "start" && e.service != healed_service {
            // Docker's restart policy brings back an infrastructure container that died by
            // itself; the harness's own kills and stops are excluded (by_harness).
            let policy_restart = own[..i]
                .iter()
                .rev()
                .any(|d| d.name == e.name && d.action == "die" && e.time - d.time <= 10.0);
            if policy_restart {
                continue;
            }
        }
        let kind = match e.action.as_str() {
            "start" => ActionKind::Start,
            "restart" => ActionKind::Restart,
            "unpause" => ActionKind::Unpause,
            other => ActionKind::Other(other.to_string()),
        };
        out.push(AgentAction {
            time: e.time,
            kind,
            container: e.name.clone(),
            project: e.project.clone(),
            service: e.service.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::OpKind;

    fn ev(t: f64, action: &str, name: &str) -> Event {
        Event {
            time: t,
            action: action.into(),
            id: format!("id-{name}"),
            name: name.into(),
            project: "p".into(),
            service: if name.contains("webapp") {
                "webapp".into()
            } else {
                "nginx".into()
            },
            exit_code: None,
            signal: None,
        }
    }

    fn op(kind: OpKind, name: &str, start: f64, end: f64) -> Op {
        Op {
            kind,
            what: String::new(),
            containers: vec![name.into()],
            project: None,
            start,
            end,
            ok: true,
        }
    }

    #[test]
    fn parses_docker_event_lines() {
        let line = r#"{"status":"die","id":"abc","from":"img","Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"com.docker.compose.project":"p","com.docker.compose.service":"webapp","exitCode":"137","name":"p-webapp-1"}},"scope":"local","time":1,"timeNano":1500000000}"#;
        let e = parse_line(line).unwrap();
        assert_eq!(e.action, "die");
        assert_eq!(e.exit_code, Some(137));
        assert_eq!(e.name, "p-webapp-1");
        assert_eq!(e.project, "p");
        assert!((e.time - 1.5).abs() < 1e-9);
        let exec = line.replace(
            "\"Action\":\"die\"",
            "\"Action\":\"exec_start: /app healthcheck\"",
        );
        assert_eq!(parse_line(&exec), None);
        assert_eq!(parse_line("not json"), None);
    }

    #[test]
    fn the_harness_kill_is_not_the_agents_but_the_start_after_it_is() {
        let events = [
            ev(10.00, "kill", "p-webapp-1"),
            ev(10.02, "die", "p-webapp-1"),
            ev(11.50, "start", "p-webapp-1"),
        ];
        let ops = [op(OpKind::Kill, "p-webapp-1", 9.99, 10.03)];
        let a = agent_actions(&events, &ops, "webapp");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, ActionKind::Start);
        assert_eq!(a[0].container, "p-webapp-1");
    }

    #[test]
    fn an_operation_explains_one_event_per_action() {
        // The harness's `docker run` (create, start; the process dies at once), then the
        // agent's start 0.6 s later, inside the old grace period.
        let events = [
            ev(1.00, "create", "p-webapp-9"),
            ev(1.10, "start", "p-webapp-9"),
            ev(1.20, "die", "p-webapp-9"),
            ev(1.80, "start", "p-webapp-9"),
        ];
        let ops = [op(OpKind::Run, "p-webapp-9", 0.9, 1.15)];
        let a = agent_actions(&events, &ops, "webapp");
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!((a[0].kind.clone(), a[0].time), (ActionKind::Start, 1.80));
    }

    #[test]
    fn a_docker_restart_is_one_action() {
        // As seen on dockerd 20.10 for `docker restart -t 2` of a process ignoring SIGTERM.
        let events = [
            ev(20.0, "kill", "p-webapp-2"),
            ev(22.0, "kill", "p-webapp-2"),
            ev(22.02, "die", "p-webapp-2"),
            ev(22.1, "stop", "p-webapp-2"),
            ev(22.4, "start", "p-webapp-2"),
            ev(22.4001, "restart", "p-webapp-2"),
        ];
        let a = agent_actions(&events, &[], "webapp");
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].kind, ActionKind::Restart);
    }

    #[test]
    fn a_start_before_an_unrelated_restart_still_counts() {
        let events = [
            ev(1.0, "start", "p-webapp-2"),
            ev(30.0, "kill", "p-webapp-2"),
            ev(30.1, "die", "p-webapp-2"),
            ev(30.2, "stop", "p-webapp-2"),
            ev(30.5, "start", "p-webapp-2"),
            ev(30.5001, "restart", "p-webapp-2"),
        ];
        let a = agent_actions(&events, &[], "webapp");
        let kinds: Vec<_> = a.iter().map(|a| a.kind.label()).collect();
        assert_eq!(kinds, ["start", "restart"]);
    }

    #[test]
    fn other_changes_are_actions_and_policy_restarts_are_not() {
        let events = [
            ev(5.0, "kill", "p-nginx-1"), // not the harness: the agent?!
            ev(5.1, "die", "p-nginx-1"),
            ev(6.0, "start", "p-nginx-1"), // Docker's restart policy after a death
            ev(7.0, "pause", "p-webapp-3"),
        ];
        let a = agent_actions(&events, &[], "webapp");
        let got: Vec<_> = a
            .iter()
            .map(|a| (a.kind.label(), a.container.as_str()))
            .collect();
        assert_eq!(
            got,
            [("kill".into(), "p-nginx-1"), ("pause".into(), "p-webapp-3")]
        );
    }

    #[test]
    fn compose_operations_cover_their_project() {
        let events = [
            ev(3.0, "stop", "p-webapp-3"),
            ev(3.1, "destroy", "p-webapp-3"),
        ];
        let ops = [Op {
            kind: OpKind::Compose,
            what: "docker compose up --scale webapp=2".into(),
            containers: vec![],
            project: Some("p".into()),
            start: 2.0,
            end: 3.05,
            ok: true,
        }];
        assert!(agent_actions(&events, &ops, "webapp").is_empty());
        let other = Op {
            project: Some("q".into()),
            ..ops[0].clone()
        };
        assert_eq!(agent_actions(&events, &[other], "webapp").len(), 2);
    }
}
