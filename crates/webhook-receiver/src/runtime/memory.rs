//! A deterministic in-memory [`ContainerRuntime`] (and [`Prober`]) for engine tests: containers
//! with scripted behaviour, events on a channel, Docker failures and panics on demand, and every
//! action the agent took in a log. Time comes from the given [`Clock`], so under
//! `tokio::time::pause()` a ten-minute window passes in no time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::{
    ContainerRef, ContainerRuntime, EventKind, Health, ReplicaState, RuntimeError, RuntimeEvent,
    Status,
};
use crate::clock::Clock;
use crate::incidents::ProbeRecord;
use crate::probe::Prober;

/// What a container does when it is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Comes up and passes its healthcheck after `healthy_after`.
    Serves,
    /// Exits with this code at once, every time.
    CrashOnStart(i64),
}

/// The runtime operations, for scripted failures and the action log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    List,
    Inspect,
    Start,
    Restart,
    Unpause,
    Logs,
}

struct Container {
    r: ContainerRef,
    status: Status,
    exit_code: Option<i64>,
    oom: bool,
    unhealthy: bool,
    /// Running, healthy to Docker, answering nothing (SIGSTOP, a deadlock).
    frozen: bool,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    restart_count: i64,
    behaviour: Behaviour,
    logs: String,
    ip: IpAddr,
}

struct World {
    containers: Vec<Container>,
    unreachable: bool,
    failures: HashMap<(Op, String), VecDeque<RuntimeError>>,
    panics: HashMap<Op, usize>,
    actions: Vec<(Op, String, DateTime<Utc>)>,
    service_url: Option<bool>,
    healthy_after: Duration,
    /// Delay of every start/restart, to make runs take time.
    action_delay: Duration,
    /// Starting is refused (403), as a read-only socket proxy would.
    read_only: bool,
}

pub struct MemoryRuntime {
    clock: Clock,
    world: Mutex<World>,
    events: Mutex<broadcast::Sender<RuntimeEvent>>,
}

impl MemoryRuntime {
    pub fn new(clock: Clock) -> Self {
        MemoryRuntime {
            clock,
            world: Mutex::new(World {
                containers: Vec::new(),
                unreachable: false,
                failures: HashMap::new(),
                panics: HashMap::new(),
                actions: Vec::new(),
                service_url: None,
                healthy_after: Duration::from_secs(1),
                action_delay: Duration::ZERO,
                read_only: false,
            }),
            events: Mutex::new(broadcast::channel(1024).0),
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a replica of `service` in `project`, running and healthy for a minute already.
    pub fn add(&self, project: &str, service: &str, n: u32) -> String {
        let name = format!("{project}-{service}-{n}");
        let now = self.clock.now();
        let mut w = self.world();
        let n_existing = w.containers.len();
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, n_existing as u8 + 2));
        w.containers.push(Container {
            r: ContainerRef {
                id: format!("{:0>64}", n_existing + 1),
                name: name.clone(),
                project: project.to_string(),
                service: service.to_string(),
                labels: BTreeMap::new(),
            },
            status: Status::Running,
            exit_code: Some(0),
            oom: false,
            unhealthy: false,
            frozen: false,
            started_at: now - chrono::Duration::seconds(60),
            finished_at: None,
            restart_count: 0,
            behaviour: Behaviour::Serves,
            logs: String::new(),
            ip,
        });
        name
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Container) -> T) -> T {
        let mut w = self.world();
        let c = w
            .containers
            .iter_mut()
            .find(|c| c.r.name == name)
            .unwrap_or_else(|| panic!("no container {name}"));
        f(c)
    }

    pub fn label(&self, name: &str, key: &str, value: &str) {
        self.with(name, |c| c.r.labels.insert(key.into(), value.into()));
    }

    pub fn set_behaviour(&self, name: &str, b: Behaviour) {
        self.with(name, |c| c.behaviour = b);
    }

    pub fn set_logs(&self, name: &str, text: &str) {
        self.with(name, |c| c.logs = text.to_string());
    }

    /// The container exits with `code` now (an OOM kill when `oom`), and says so on the stream.
    pub fn exit(&self, name: &str, code: i64, oom: bool) {
        self.exit_after(name, code, oom, None);
    }

    /// As [`MemoryRuntime::exit`], after a life of `lived` (a replica that dies young never
    /// passed its healthcheck).
    pub fn exit_after(&self, name: &str, code: i64, oom: bool, lived: Option<Duration>) {
        let now = self.clock.now();
        let r = self.with(name, |c| {
            if let Some(l) = lived {
                c.started_at = now - chrono::Duration::from_std(l).unwrap_or_default();
            }
            c.status = Status::Exited;
            c.exit_code = Some(code);
            c.oom = oom;
            c.frozen = false;
            c.finished_at = Some(now);
            c.r.clone()
        });
        if oom {
            self.emit(EventKind::Oom, &r, None, now);
        }
        self.emit(EventKind::Die, &r, Some(code), now);
    }

    /// `docker kill`: exit 137, not an OOM kill.
    pub fn kill(&self, name: &str) {
        self.exit(name, 137, false);
    }

    /// `docker stop`: exit 0, and the stop event.
    pub fn stop(&self, name: &str) {
        self.exit(name, 0, false);
        let r = self.with(name, |c| c.r.clone());
        self.emit(EventKind::Stop, &r, None, self.clock.now());
    }

    /// `docker pause`.
    pub fn pause(&self, name: &str) {
        let r = self.with(name, |c| {
            c.status = Status::Paused;
            c.r.clone()
        });
        self.emit(EventKind::Pause, &r, None, self.clock.now());
    }

    /// Running and healthy to Docker, answering nothing (no event: Docker does not know).
    pub fn freeze(&self, name: &str) {
        self.with(name, |c| c.frozen = true);
    }

    /// The healthcheck starts failing.
    pub fn make_unhealthy(&self, name: &str) {
        let r = self.with(name, |c| {
            c.unhealthy = true;
            c.r.clone()
        });
        self.emit(EventKind::Unhealthy, &r, None, self.clock.now());
    }

    /// The next `op` on `name` fails with `error`.
    pub fn fail_next(&self, op: Op, name: &str, error: RuntimeError) {
        self.world()
            .failures
            .entry((op, name.to_string()))
            .or_default()
            .push_back(error);
    }

    /// The next `op` (on any container) panics.
    pub fn panic_next(&self, op: Op) {
        *self.world().panics.entry(op).or_default() += 1;
    }

    /// Docker goes away (every call fails, event streams end) or comes back.
    pub fn set_unreachable(&self, down: bool) {
        self.world().unreachable = down;
        if down {
            self.end_event_streams();
        }
    }

    /// Ends every open event stream (the daemon restarted, a proxy dropped the connection).
    pub fn end_event_streams(&self) {
        *self.events.lock().unwrap_or_else(|p| p.into_inner()) = broadcast::channel(1024).0;
    }

    /// Gives the service a URL that answers while a replica serves and `ok` holds.
    pub fn set_service_url(&self, ok: bool) {
        self.world().service_url = Some(ok);
    }

    /// Writes are refused, as through a read-only proxy.
    pub fn set_read_only(&self, ro: bool) {
        self.world().read_only = ro;
    }

    pub fn set_healthy_after(&self, d: Duration) {
        self.world().healthy_after = d;
    }

    /// Every start/restart takes this long (virtual time under a paused clock).
    pub fn set_action_delay(&self, d: Duration) {
        self.world().action_delay = d;
    }

    /// The agent's actions so far: (operation, container name, time).
    pub fn actions(&self) -> Vec<(Op, String, DateTime<Utc>)> {
        self.world().actions.clone()
    }

    /// How many times the agent started, restarted or unpaused `name`.
    pub fn actions_on(&self, name: &str) -> usize {
        self.world()
            .actions
            .iter()
            .filter(|(op, n, _)| n == name && matches!(op, Op::Start | Op::Restart | Op::Unpause))
            .count()
    }

    pub fn status(&self, name: &str) -> Status {
        self.with(name, |c| c.status)
    }

    /// Serving: running, healthy, answering.
    pub fn serving(&self, name: &str) -> bool {
        let now = self.clock.now();
        let after = self.world().healthy_after;
        self.with(name, |c| {
            c.status == Status::Running
                && !c.unhealthy
                && !c.frozen
                && health_of(c, now, after) == Health::Healthy
        })
    }

    fn emit(&self, kind: EventKind, r: &ContainerRef, exit_code: Option<i64>, time: DateTime<Utc>) {
        let _ = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(RuntimeEvent {
                kind,
                container: r.clone(),
                exit_code,
                time,
            });
    }

    /// Checks reachability, scripted failures and panics for `op` on `name`.
    fn gate(&self, op: Op, name: &str) -> Result<(), RuntimeError> {
        let mut w = self.world();
        if let Some(n) = w.panics.get_mut(&op).filter(|n| **n > 0) {
            *n -= 1;
            drop(w);
            panic!("scripted panic in {op:?}");
        }
        if w.unreachable {
            return Err(RuntimeError::Unreachable(
                "connection refused (test)".into(),
            ));
        }
        if let Some(e) = w
            .failures
            .get_mut(&(op, name.to_string()))
            .and_then(VecDeque::pop_front)
        {
            return Err(e);
        }
        Ok(())
    }

    async fn act(&self, op: Op, id: &str) -> Result<(), RuntimeError> {
        let name = self.name_of(id)?;
        self.gate(op, &name)?;
        let delay = self.world().action_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let now = self.clock.now();
        let mut died = None;
        let mut crashed = None;
        {
            let mut w = self.world();
            w.actions.push((op, name.clone(), now));
            let c = w
                .containers
                .iter_mut()
                .find(|c| c.r.id == id)
                .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
            match op {
                Op::Unpause => {
                    if c.status != Status::Paused {
                        return Err(RuntimeError::Api(format!(
                            "HTTP 409: Container {id} is not paused"
                        )));
                    }
                    c.status = Status::Running;
                    return Ok(());
                }
                Op::Restart if matches!(c.status, Status::Running | Status::Paused) => {
                    died = Some((c.r.clone(), 143));
                }
                // Docker answers 304.
                Op::Start if c.status == Status::Running => return Ok(()),
                _ => {}
            }
            c.restart_count += 1;
            // A restart's die comes before the new start, as Docker's does.
            c.started_at = if died.is_some() {
                now + chrono::Duration::milliseconds(1)
            } else {
                now
            };
            c.unhealthy = false;
            c.frozen = false;
            c.oom = false;
            match c.behaviour {
                Behaviour::Serves => {
                    c.status = Status::Running;
                    c.exit_code = Some(0);
                    c.finished_at = None;
                }
                Behaviour::CrashOnStart(code) => {
                    c.status = Status::Exited;
                    c.exit_code = Some(code);
                    c.finished_at = Some(now);
                    crashed = Some((c.r.clone(), code));
                }
            }
        }
        if let Some((r, code)) = died {
            self.emit(EventKind::Die, &r, Some(code), now);
        }
        if let Some((r, code)) = crashed {
            self.emit(EventKind::Die, &r, Some(code), now);
        }
        Ok(())
    }

    fn name_of(&self, id: &str) -> Result<String, RuntimeError> {
        self.world()
            .containers
            .iter()
            .find(|c| c.r.id == id)
            .map(|c| c.r.name.clone())
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }
}

fn health_of(c: &Container, now: DateTime<Utc>, healthy_after: Duration) -> Health {
    if c.unhealthy || c.status == Status::Paused {
        Health::Unhealthy
    } else if now - c.started_at >= chrono::Duration::from_std(healthy_after).unwrap_or_default() {
        Health::Healthy
    } else {
        Health::Starting
    }
}

#[async_trait]
impl ContainerRuntime for MemoryRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.gate(Op::List, "")
    }

    async fn list(&self, project: &str, service: &str) -> Result<Vec<ContainerRef>, RuntimeError> {
        self.gate(Op::List, service)?;
        let mut out: Vec<ContainerRef> = self
            .world()
            .containers
            .iter()
            .filter(|c| c.r.project == project && c.r.service == service)
            .map(|c| c.r.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn inspect(
        &self,
        container: &ContainerRef,
        _with_stats: bool,
    ) -> Result<ReplicaState, RuntimeError> {
        self.gate(Op::Inspect, &container.name)?;
        let now = self.clock.now();
        let w = self.world();
        let c = w
            .containers
            .iter()
            .find(|c| c.r.id == container.id)
            .ok_or_else(|| RuntimeError::NotFound(container.id.clone()))?;
        let health = health_of(c, now, w.healthy_after);
        let healthy_at =
            c.started_at + chrono::Duration::from_std(w.healthy_after).unwrap_or_default();
        let healthy_since = match c.status {
            Status::Running | Status::Paused if healthy_at <= now => Some(healthy_at),
            Status::Exited if c.finished_at.is_some_and(|f| healthy_at <= f) => Some(healthy_at),
            _ => None,
        };
        Ok(ReplicaState {
            container: c.r.clone(),
            status: c.status,
            exit_code: c.exit_code,
            oom_killed: c.oom,
            health: Some(health),
            restart_count: c.restart_count,
            healthy_since,
            health_log: Vec::new(),
            started_at: Some(c.started_at),
            finished_at: c.finished_at,
            memory_limit: Some(256 * 1024 * 1024),
            memory_usage: None,
            ip: Some(c.ip),
        })
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.act(Op::Start, id).await
    }

    async fn restart(&self, id: &str, _timeout_secs: u32) -> Result<(), RuntimeError> {
        self.act(Op::Restart, id).await
    }

    async fn unpause(&self, id: &str) -> Result<(), RuntimeError> {
        self.act(Op::Unpause, id).await
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<String, RuntimeError> {
        let name = self.name_of(id)?;
        self.gate(Op::Logs, &name)?;
        let text = self.with(&name, |c| c.logs.clone());
        let all: Vec<&str> = text.lines().collect();
        Ok(all[all.len().saturating_sub(lines)..].join("\n"))
    }

    async fn can_act(&self) -> Result<bool, RuntimeError> {
        self.gate(Op::Start, "")?;
        Ok(!self.world().read_only)
    }

    async fn compose_project_of(&self, container: &str) -> Result<Option<String>, RuntimeError> {
        Ok(self
            .world()
            .containers
            .iter()
            .find(|c| c.r.id == container || c.r.name == container)
            .map(|c| c.r.project.clone()))
    }

    async fn events(
        &self,
        project: &str,
    ) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        self.gate(Op::List, "")?;
        let rx = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .subscribe();
        let project = project.to_string();
        Ok(futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((ev, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .filter(move |ev| std::future::ready(ev.container.project == project))
        .map(Ok)
        .boxed())
    }
}

#[async_trait]
impl Prober for MemoryRuntime {
    async fn replica(&self, state: &ReplicaState) -> Option<ProbeRecord> {
        let answers = self
            .world()
            .containers
            .iter()
            .any(|c| c.r.id == state.container.id && c.status == Status::Running && !c.frozen);
        Some(ProbeRecord {
            ok: answers,
            url: None,
            status: answers.then_some(200),
            latency_ms: if answers { 1 } else { 1000 },
            error: (!answers).then(|| "no answer within 1000 ms".to_string()),
            timed_out: !answers,
        })
    }

    async fn service(&self) -> Option<ProbeRecord> {
        let ok = self.world().service_url?;
        let names: Vec<String> = self
            .world()
            .containers
            .iter()
            .map(|c| c.r.name.clone())
            .collect();
        let any = names.iter().any(|n| self.serving(n));
        let ok = ok && any;
        Some(ProbeRecord {
            ok,
            url: Some("http://lb/health".into()),
            status: Some(if ok { 200 } else { 502 }),
            latency_ms: 1,
            error: None,
            timed_out: false,
        })
    }
}
