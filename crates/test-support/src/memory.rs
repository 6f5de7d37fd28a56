//! A deterministic in-memory [`ContainerRuntime`] (and [`Prober`]) for engine tests: containers
//! with scripted behaviour, events on a channel and in a history the "daemon" keeps (and loses
//! when it restarts), Docker failures, refusals and panics on demand, and every action the agent
//! took in a log. Time comes from the given [`Clock`], so under `tokio::time::pause()` a
//! ten-minute window passes in no time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use webhook_receiver::clock::Clock;
use webhook_receiver::incidents::ProbeRecord;
use webhook_receiver::probe::Prober;
use webhook_receiver::runtime::{
    ContainerRef, ContainerRuntime, EventKind, Health, ReplicaState, RuntimeError, RuntimeEvent,
    Status,
};

/// What a container does when it is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Comes up and passes its healthcheck after `healthy_after`.
    Serves,
    /// Exits with this code at once, every time.
    CrashOnStart(i64),
    /// Runs, but its healthcheck never passes (a dependency it needs is missing).
    NeverHealthy,
}

/// The runtime operations, for scripted failures, panics and the action log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Ping,
    List,
    Inspect,
    Start,
    Restart,
    Stop,
    Unpause,
    Logs,
    Events,
    History,
}

/// Docker keeps this many events (moby's ring buffer).
const HISTORY: usize = 256;

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
    /// Memory in use right after a start, and what each second of life adds (a leak under load).
    base_memory: u64,
    leak_per_sec: u64,
    /// Goes on serving through SIGTERM: a stop ends only with the kill after its timeout.
    ignores_sigterm: bool,
}

/// Every replica's memory limit (compose `mem_limit: 256m`).
pub const MEMORY_LIMIT: u64 = 256 * 1024 * 1024;
/// A replica's memory right after a start.
pub const BASE_MEMORY: u64 = 8 * 1024 * 1024;

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
    /// Containers whose start Docker refuses, with its message (a port taken...).
    refusing: HashMap<String, String>,
    /// The events the daemon still holds (lost when it restarts).
    history: VecDeque<RuntimeEvent>,
    oom_kills: usize,
    /// Containers killed (`docker kill`) the moment the agent's probe reaches them: a death
    /// between the agent's inspect and its probe.
    killed_when_probed: Vec<String>,
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
                refusing: HashMap::new(),
                killed_when_probed: Vec::new(),
                history: VecDeque::new(),
                oom_kills: 0,
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
                id: fake_id(&name, n_existing),
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
            base_memory: BASE_MEMORY,
            leak_per_sec: 0,
            ignores_sigterm: false,
        });
        name
    }

    /// `name` leaks `bytes_per_sec` from now on (for its whole current life, as if the leak had
    /// always run at that rate): it is OOM-killed when it reaches [`MEMORY_LIMIT`].
    pub fn set_leak(&self, name: &str, bytes_per_sec: u64) {
        self.with(name, |c| c.leak_per_sec = bytes_per_sec);
    }

    /// `name` ignores SIGTERM: a graceful stop ends with Docker's kill after the stop timeout.
    pub fn ignore_sigterm(&self, name: &str) {
        self.with(name, |c| c.ignores_sigterm = true);
    }

    /// OOM kills of every container so far.
    pub fn oom_kills(&self) -> usize {
        self.world().oom_kills
    }

    /// The kernel's OOM killer, applied lazily: a running container whose leak reached the limit
    /// died then.
    fn oom_kill_due(&self) {
        let now = self.clock.now();
        let mut died = Vec::new();
        {
            let mut w = self.world();
            for c in w.containers.iter_mut() {
                if c.status != Status::Running || c.leak_per_sec == 0 {
                    continue;
                }
                let secs =
                    (MEMORY_LIMIT.saturating_sub(c.base_memory)) as f64 / c.leak_per_sec as f64;
                let at = c.started_at + chrono::Duration::milliseconds((secs * 1000.0) as i64);
                if at <= now {
                    c.status = Status::Exited;
                    c.exit_code = Some(137);
                    c.oom = true;
                    c.frozen = false;
                    c.finished_at = Some(at);
                    died.push((c.r.clone(), at));
                }
            }
            w.oom_kills += died.len();
        }
        for (r, at) in died {
            self.emit(EventKind::Oom, &r, None, at);
            self.emit(EventKind::Die, &r, Some(137), at);
        }
    }

    /// A graceful stop: SIGTERM; a replica that drains exits 0 at once (after the action delay),
    /// one that ignores SIGTERM is killed after `timeout` (exit 137, not an OOM kill).
    async fn stop_gracefully(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let name = self.name_of(id)?;
        self.gate(Op::Stop, &name)?;
        self.oom_kill_due();
        let (r, running, ignores) = self.with(&name, |c| {
            (c.r.clone(), c.status == Status::Running, c.ignores_sigterm)
        });
        let now = self.clock.now();
        self.world().actions.push((Op::Stop, name.clone(), now));
        if !running {
            // Docker answers 304.
            return Ok(());
        }
        self.emit(EventKind::Kill { signal: Some(15) }, &r, None, now);
        let delay = self.world().action_delay;
        tokio::time::sleep(if ignores { timeout } else { delay }).await;
        self.oom_kill_due();
        let code = if ignores { 137 } else { 0 };
        let now = self.clock.now();
        let stopped = self.with(&name, |c| {
            if c.status != Status::Running {
                return false;
            }
            c.status = Status::Exited;
            c.exit_code = Some(code);
            c.finished_at = Some(now);
            true
        });
        if stopped {
            if ignores {
                self.emit(EventKind::Kill { signal: Some(9) }, &r, None, now);
            }
            self.emit(EventKind::Die, &r, Some(code), now);
            self.emit(EventKind::Stop, &r, None, now);
        }
        Ok(())
    }

    /// The clock the runtime's times come from.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// The container `name` as listed (its id, labels...).
    pub fn container(&self, name: &str) -> ContainerRef {
        self.with(name, |c| c.r.clone())
    }

    /// Someone else starts `name` (`docker start`, compose): not an action of the agent's.
    pub fn start_outside(&self, name: &str) {
        let now = self.clock.now();
        self.with(name, |c| {
            c.status = Status::Running;
            c.exit_code = Some(0);
            c.finished_at = None;
            c.unhealthy = false;
            c.oom = false;
            c.started_at = now;
        });
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

    /// The next probe of `name` finds it killed: it dies (exit 137) as the probe arrives.
    pub fn kill_when_probed(&self, name: &str) {
        self.world().killed_when_probed.push(name.to_string());
    }

    /// `docker stop`: SIGTERM (the kill event), exit 0, and the stop event, as Docker does.
    pub fn stop(&self, name: &str) {
        let r = self.with(name, |c| c.r.clone());
        self.emit(
            EventKind::Kill { signal: Some(15) },
            &r,
            None,
            self.clock.now(),
        );
        self.exit(name, 0, false);
        self.emit(EventKind::Stop, &r, None, self.clock.now());
    }

    /// The daemon stops (a host reboot, a Docker upgrade): its API goes first, so nobody sees
    /// events; every running container exits 0 (the webapp handles SIGTERM); the calls fail
    /// until [`MemoryRuntime::daemon_back`].
    pub fn daemon_down(&self) {
        let now = self.clock.now();
        {
            let mut w = self.world();
            w.unreachable = true;
            for c in w.containers.iter_mut() {
                if matches!(c.status, Status::Running | Status::Paused) {
                    c.status = Status::Exited;
                    c.exit_code = Some(0);
                    c.oom = false;
                    c.frozen = false;
                    c.finished_at = Some(now);
                }
            }
        }
        self.end_event_streams();
    }

    /// A new daemon answers: it holds no events from before.
    pub fn daemon_back(&self) {
        let mut w = self.world();
        w.unreachable = false;
        w.history.clear();
    }

    /// Docker refuses to start `name` with `message` (`None`: it starts it again).
    pub fn refuse_start(&self, name: &str, message: Option<&str>) {
        let mut w = self.world();
        match message {
            Some(m) => w.refusing.insert(name.to_string(), m.to_string()),
            None => w.refusing.remove(name),
        };
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
            .filter(|(op, n, _)| {
                n == name && matches!(op, Op::Start | Op::Restart | Op::Unpause | Op::Stop)
            })
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
        let ev = RuntimeEvent {
            kind,
            container: r.clone(),
            exit_code,
            time,
        };
        {
            let mut w = self.world();
            if w.history.len() >= HISTORY {
                w.history.pop_front();
            }
            w.history.push_back(ev.clone());
        }
        let _ = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(ev);
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
        if op == Op::Start {
            if let Some(m) = self.world().refusing.get(&name).cloned() {
                return Err(RuntimeError::Api(format!("HTTP 500: {m}")));
            }
        }
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
                .find(|c| c.r.id == id || c.r.name == id)
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
                    died = Some((c.r.clone(), 0));
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
                Behaviour::Serves | Behaviour::NeverHealthy => {
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
            // As Docker's restart: SIGTERM, the death, the stop, the new start.
            self.emit(EventKind::Kill { signal: Some(15) }, &r, None, now);
            self.emit(EventKind::Die, &r, Some(code), now);
            self.emit(EventKind::Stop, &r, None, now);
        }
        if let Some((r, code)) = crashed {
            self.emit(EventKind::Die, &r, Some(code), now);
        }
        Ok(())
    }

    /// The name of the container `id` names (its id or, as the agent addresses it, its name).
    fn name_of(&self, id: &str) -> Result<String, RuntimeError> {
        self.world()
            .containers
            .iter()
            .find(|c| c.r.id == id || c.r.name == id)
            .map(|c| c.r.name.clone())
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }
}

/// A 64-hex-digit id, different for every container, as Docker's are.
fn fake_id(name: &str, n: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (name, n).hash(&mut h);
    let a = h.finish();
    format!(
        "{a:016x}{:016x}{:016x}{:016x}",
        a.rotate_left(16),
        a.rotate_left(32),
        a.rotate_left(48)
    )
}

fn health_of(c: &Container, now: DateTime<Utc>, healthy_after: Duration) -> Health {
    let up = now - c.started_at >= chrono::Duration::from_std(healthy_after).unwrap_or_default();
    let never = up && c.behaviour == Behaviour::NeverHealthy;
    if c.unhealthy || c.status == Status::Paused || never {
        Health::Unhealthy
    } else if up {
        Health::Healthy
    } else {
        Health::Starting
    }
}

#[async_trait]
impl ContainerRuntime for MemoryRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.gate(Op::Ping, "")
    }

    async fn list(&self, project: &str, service: &str) -> Result<Vec<ContainerRef>, RuntimeError> {
        self.gate(Op::List, service)?;
        self.oom_kill_due();
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
        with_stats: bool,
    ) -> Result<ReplicaState, RuntimeError> {
        self.gate(Op::Inspect, &container.name)?;
        self.oom_kill_due();
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
            _ if c.behaviour == Behaviour::NeverHealthy => None,
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
            memory_limit: Some(MEMORY_LIMIT),
            memory_usage: (with_stats && c.status == Status::Running).then(|| {
                let secs = (now - c.started_at).num_milliseconds().max(0) as f64 / 1000.0;
                (c.base_memory + (c.leak_per_sec as f64 * secs) as u64).min(MEMORY_LIMIT)
            }),
            ip: Some(c.ip),
        })
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.act(Op::Start, id).await
    }

    async fn restart(&self, id: &str, _timeout_secs: u32) -> Result<(), RuntimeError> {
        self.act(Op::Restart, id).await
    }

    async fn memory(&self, container: &ContainerRef) -> Result<Option<u64>, RuntimeError> {
        Ok(self.inspect(container, true).await?.memory_usage)
    }

    async fn stop(&self, name: &str, timeout_secs: u32) -> Result<(), RuntimeError> {
        self.stop_gracefully(name, Duration::from_secs(timeout_secs.into()))
            .await
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

    async fn can_act(&self, _project: &str, _service: &str) -> Result<bool, RuntimeError> {
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
        self.gate(Op::Events, "")?;
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

    async fn history(
        &self,
        project: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<RuntimeEvent>, RuntimeError> {
        self.gate(Op::History, "")?;
        Ok(self
            .world()
            .history
            .iter()
            .filter(|e| e.container.project == project && e.time >= since && e.time <= until)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl Prober for MemoryRuntime {
    async fn replica(&self, state: &ReplicaState) -> Option<ProbeRecord> {
        let dies = {
            let mut w = self.world();
            let at = w
                .killed_when_probed
                .iter()
                .position(|n| *n == state.container.name);
            at.map(|i| w.killed_when_probed.remove(i))
        };
        if let Some(name) = dies {
            self.kill(&name);
        }
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
