//! The stack under test: its settings, the live state of its replicas, and the baseline every
//! case starts from (every replica serving, no webapp alert firing, the agent idle and reset).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::clients::{Agent, Monitoring, Sink};
use crate::docker::{now, Docker, PROJECT_LABEL, SERVICE_LABEL};
use crate::events::Recorder;
use crate::locust::Locust;

/// What the harness needs to know about the running stack.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `runbook` or `llm`: a label for the results.
    pub mode: String,
    pub project: String,
    /// A second compose project holding a dead `webapp` container the agent must not touch.
    pub decoy_project: String,
    pub service: String,
    pub replicas: usize,
    pub agent_url: String,
    pub token: String,
    pub sink_url: String,
    pub prom_url: String,
    pub am_url: String,
    pub nginx_url: String,
    pub repo_root: PathBuf,
    pub out_dir: PathBuf,
    /// The static webapp binary, for replicas built with a shell around it (unhealthy, logs).
    pub webapp_bin: PathBuf,
    /// An image with a shell (the Debian base of the stand-ins).
    pub shell_image: String,
    /// Alertmanager's repeat_interval in this stack: cases that must see a repeat wait for it.
    pub repeat_interval: Duration,
    /// Agent settings the expectations follow.
    pub crash_on_start_tries: usize,
    pub escalate_after: usize,
    /// Ceiling on the agent's resident memory (fault runs).
    pub rss_limit_bytes: f64,
    /// The stack's Locust UI (the sustained load).
    pub locust_url: String,
    /// The sustained load: how long each leg's swarm runs, its spawn rate, and which leg runs
    /// first (`agent` or `policy`).
    pub load_secs: u64,
    pub load_spawn_rate: u32,
    pub load_first: String,
}

/// One container as the harness sees it.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub name: String,
    pub status: String,
    pub paused: bool,
    pub health: Option<String>,
    pub ip: Option<String>,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub env: Vec<String>,
    pub network: Option<String>,
    /// Memory limit in bytes (0: none).
    pub memory: i64,
}

impl View {
    pub fn from_inspect(v: &Value) -> View {
        let state = &v["State"];
        let networks = v["NetworkSettings"]["Networks"].as_object();
        let (network, ip) = networks
            .and_then(|n| n.iter().next())
            .map(|(k, n)| {
                (
                    Some(k.clone()),
                    n["IPAddress"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                )
            })
            .unwrap_or((None, None));
        View {
            name: v["Name"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            status: state["Status"].as_str().unwrap_or_default().to_string(),
            paused: state["Paused"].as_bool().unwrap_or(false),
            health: state["Health"]["Status"].as_str().map(str::to_string),
            ip,
            exit_code: state["ExitCode"].as_i64().unwrap_or_default(),
            oom_killed: state["OOMKilled"].as_bool().unwrap_or(false),
            image: v["Config"]["Image"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            labels: v["Config"]["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            env: v["Config"]["Env"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            network,
            memory: v["HostConfig"]["Memory"].as_i64().unwrap_or(0),
        }
    }

    /// Running, not paused, and healthy where a healthcheck exists (what Docker can tell).
    pub fn docker_serving(&self) -> bool {
        self.status == "running"
            && !self.paused
            && matches!(self.health.as_deref(), None | Some("healthy"))
    }
}

pub struct Stack {
    pub cfg: Settings,
    pub docker: Docker,
    pub agent: Agent,
    pub sink: Sink,
    pub mon: Monitoring,
    pub events: Recorder,
    /// Containers the harness created in earlier cases; removed before the next case.
    pub extras: Mutex<Vec<String>>,
    /// Containers the current case created (kept through its baselines, then moved to `extras`).
    pub case_extras: Mutex<Vec<String>>,
    /// Replicas the harness froze with SIGSTOP; thawed before the next case.
    pub frozen: Mutex<Vec<String>>,
    /// The status `/reset` answered last (404: an agent without the endpoint).
    pub reset_status: Mutex<Option<u16>>,
    /// Prometheus restarted with the daemon: its store holds series of replicas whose address
    /// changed, which count as up for five more minutes and then fire WebappReplicaDown for
    /// ten (the rule compares with the most replicas seen). The next baseline gives it a fresh
    /// store, or no later case could start from a quiet stack.
    pub fresh_prometheus: Mutex<bool>,
    pub locust: Locust,
    probe: reqwest::Client,
}

/// Progress output: the harness can run for many minutes.
pub fn say(msg: impl AsRef<str>) {
    eprintln!(
        "{} scenarios: {}",
        chrono::Local::now().format("%H:%M:%S"),
        msg.as_ref()
    );
}

impl Stack {
    pub async fn new(cfg: Settings) -> Result<Stack> {
        let docker = Docker::new(cfg.repo_root.clone());
        std::fs::create_dir_all(&cfg.out_dir)
            .with_context(|| format!("creating {}", cfg.out_dir.display()))?;
        let events = Recorder::start(
            vec![cfg.project.clone(), cfg.decoy_project.clone()],
            now() - 1.0,
            &cfg.out_dir.join("events.jsonl"),
        )
        .await?;
        Ok(Stack {
            agent: Agent::new(&cfg.agent_url, &cfg.token),
            sink: Sink::new(&cfg.sink_url),
            mon: Monitoring::new(&cfg.prom_url, &cfg.am_url),
            docker,
            events,
            extras: Mutex::default(),
            case_extras: Mutex::default(),
            frozen: Mutex::default(),
            reset_status: Mutex::default(),
            fresh_prometheus: Mutex::default(),
            locust: Locust::new(&cfg.locust_url),
            probe: reqwest::Client::builder()
                .timeout(Duration::from_millis(800))
                .build()
                .expect("http client"),
            cfg,
        })
    }

    /// Names of the service's containers (compose replicas and any the harness made), sorted.
    pub async fn replica_names(&self) -> Result<Vec<String>> {
        Ok(self
            .docker
            .list(&self.cfg.project, &self.cfg.service)
            .await?
            .into_iter()
            .map(|l| l.name)
            .collect())
    }

    /// The one container of another service of the stack (nginx, prometheus, ...).
    pub async fn container_of(&self, service: &str) -> Result<String> {
        let l = self.docker.list(&self.cfg.project, service).await?;
        match l.as_slice() {
            [one] => Ok(one.name.clone()),
            [] => bail!("no {service} container in {}", self.cfg.project),
            more => Ok(more[0].name.clone()),
        }
    }

    pub async fn views(&self, names: &[String]) -> Result<Vec<View>> {
        Ok(self
            .docker
            .inspect(names)
            .await?
            .iter()
            .map(View::from_inspect)
            .collect())
    }

    pub async fn view(&self, name: &str) -> Result<View> {
        self.views(&[name.to_string()])
            .await?
            .into_iter()
            .next()
            .with_context(|| format!("container {name} not found"))
    }

    /// `GET http://<ip>:8000/health` straight at the replica: a frozen process fails this
    /// while Docker may still call it healthy.
    pub async fn probe(&self, ip: &str) -> bool {
        matches!(
            self.probe.get(format!("http://{ip}:8000/health")).send().await,
            Ok(r) if r.status().is_success()
        )
    }

    /// Per name: serving (Docker: running, unpaused, healthy; and it answers `/health`).
    pub async fn serving(&self, names: &[String]) -> HashMap<String, bool> {
        let views = self.views(names).await.unwrap_or_default();
        let mut out: HashMap<String, bool> = names.iter().map(|n| (n.clone(), false)).collect();
        let checks = views.iter().map(|v| async move {
            let ok = v.docker_serving()
                && match &v.ip {
                    Some(ip) => self.probe(ip).await,
                    None => false,
                };
            (v.name.clone(), ok)
        });
        for (name, ok) in futures_util::future::join_all(checks).await {
            out.insert(name, ok);
        }
        out
    }

    /// Per name: running and answering `/health` at its own address, whatever Docker's
    /// healthcheck says yet (a replica just started answers before its first check ran): what
    /// nginx can route to.
    pub async fn answering(&self, names: &[String]) -> HashMap<String, bool> {
        let views = self.views(names).await.unwrap_or_default();
        let mut out: HashMap<String, bool> = names.iter().map(|n| (n.clone(), false)).collect();
        let checks = views.iter().map(|v| async move {
            let ok = v.status == "running"
                && !v.paused
                && match &v.ip {
                    Some(ip) => self.probe(ip).await,
                    None => false,
                };
            (v.name.clone(), ok)
        });
        for (name, ok) in futures_util::future::join_all(checks).await {
            out.insert(name, ok);
        }
        out
    }

    /// The agent's `POST /start` calls for `name` since `since` (seconds since the epoch), by
    /// Docker's answer, from the socket proxy's log.
    pub async fn start_calls(
        &self,
        name: &str,
        since: f64,
    ) -> Result<std::collections::BTreeMap<String, usize>> {
        let proxy = self.container_of("socket-proxy").await?;
        let id = self
            .docker
            .cli(&["inspect", "-f", "{{.Id}}", name])
            .await
            .unwrap_or_default();
        let out = tokio::process::Command::new("docker")
            .args(["logs", "--since", &format!("{since:.3}"), &proxy])
            .output()
            .await
            .context("docker logs of the socket proxy")?;
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(crate::proxylog::start_calls(&log, &[name, id.trim()]))
    }

    /// Every container of the project that is not a replica of the healed service.
    pub async fn infrastructure(&self) -> Result<Vec<View>> {
        let p = format!("label={PROJECT_LABEL}={}", self.cfg.project);
        let out = self
            .docker
            .cli(&["ps", "-a", "--filter", &p, "--format", "{{.Names}}"])
            .await?;
        let names: Vec<String> = out.lines().map(str::to_string).collect();
        Ok(self
            .views(&names)
            .await?
            .into_iter()
            .filter(|v| {
                v.labels.get(SERVICE_LABEL).map(String::as_str) != Some(self.cfg.service.as_str())
                    && v.labels
                        .get("com.docker.compose.oneoff")
                        .map(String::as_str)
                        != Some("True")
            })
            .collect())
    }

    /// The current case is over: what it created goes at the next baseline.
    pub fn end_case(&self) {
        let mut made = std::mem::take(&mut *self.case_extras.lock().expect("lock"));
        self.extras.lock().expect("lock").append(&mut made);
    }

    /// Back to the baseline: extras removed, frozen and paused replicas thawed, stopped
    /// infrastructure started, `replicas` replicas serving, nothing firing, the agent idle and
    /// its per-replica state reset. Every change is a recorded harness operation.
    pub async fn baseline(&self) -> Result<()> {
        let started = now();
        let extras: Vec<String> = std::mem::take(&mut *self.extras.lock().expect("lock"));
        if !extras.is_empty() {
            self.docker.remove(&extras).await?;
        }
        if std::mem::take(&mut *self.fresh_prometheus.lock().expect("lock")) {
            self.fresh_prometheus_store().await?;
        }
        let frozen: Vec<String> = std::mem::take(&mut *self.frozen.lock().expect("lock"));
        for name in frozen {
            let _ = self.docker.signal(&name, "SIGCONT").await;
        }
        for v in self.infrastructure().await? {
            if v.paused {
                self.docker.unpause(&v.name).await?;
            } else if v.status != "running" {
                say(format!("baseline: starting {}", v.name));
                self.docker.start(std::slice::from_ref(&v.name)).await?;
            }
        }
        let names = self.replica_names().await?;
        for v in self.views(&names).await? {
            if v.paused {
                self.docker.unpause(&v.name).await?;
            }
        }
        let views = self.views(&names).await?;
        if views.len() != self.cfg.replicas || views.iter().any(|v| v.status != "running") {
            let scale = format!("{}={}", self.cfg.service, self.cfg.replicas);
            self.docker
                .compose(
                    &self.cfg.project,
                    &[
                        "up",
                        "-d",
                        "--no-recreate",
                        "--no-deps",
                        "--scale",
                        &scale,
                        &self.cfg.service,
                    ],
                )
                .await?;
        }
        // Forget what the agent gave up on before waiting, too: a replica it gave up on is
        // back only once the agent is told (as an operator would, after fixing the cause).
        for name in self.replica_names().await? {
            let _ = self.agent.reset(&name).await;
        }
        self.wait_quiet(true, 150.0 - (now() - started)).await?;
        for name in self.replica_names().await? {
            if let Ok(status) = self.agent.reset(&name).await {
                *self.reset_status.lock().expect("lock") = Some(status);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    }

    /// The service's containers created again by compose with `env` on top of the stack's
    /// variables (`None`: unset; e.g. `PREVENTIVE_RECYCLE=on` for the agent,
    /// `LEAK_BYTES_PER_REQUEST` for the replicas): a setting that lives in a container's
    /// environment changes only this way. Recreated with the variables unset, the service is
    /// back as the stack started it.
    pub async fn recreate(&self, service: &str, env: &[(&str, Option<&str>)]) -> Result<()> {
        say(format!(
            "recreating {service} with {}",
            env.iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => format!("{k} unset"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        ));
        self.docker
            .compose_env(
                &self.cfg.project,
                &["up", "-d", "--no-deps", "--force-recreate", service],
                env,
            )
            .await?;
        Ok(())
    }

    /// Waits at most `timeout_s` until the agent answers `/healthz`.
    pub async fn wait_agent(&self, timeout_s: f64) -> Result<()> {
        let deadline = now() + timeout_s;
        while self.agent.healthz().await.is_err() {
            if now() > deadline {
                bail!("the agent did not answer {timeout_s:.0} s after it was started");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    }

    /// Prometheus with an empty store: its container and data volume removed, then created
    /// again by compose (same configuration).
    async fn fresh_prometheus_store(&self) -> Result<()> {
        say("baseline: Prometheus gets a fresh store (its old one holds the replicas' addresses from before the daemon restart)");
        let p = &self.cfg.project;
        self.docker
            .compose(p, &["rm", "--stop", "--force", "-v", "prometheus"])
            .await?;
        let volume = format!("{p}_prometheus-data");
        if let Err(e) = self.docker.cli(&["volume", "rm", "-f", &volume]).await {
            say(format!("baseline: {e:#}"));
        }
        self.docker
            .compose(p, &["up", "-d", "--no-deps", "prometheus"])
            .await?;
        Ok(())
    }

    /// Waits at most `timeout_s` until [`Stack::quiet`] holds, saying what it waits for.
    pub async fn wait_quiet(&self, agent_on: bool, timeout_s: f64) -> Result<()> {
        let deadline = now() + timeout_s.max(10.0);
        let mut last = String::new();
        loop {
            match self.quiet(agent_on).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let msg = e.to_string();
                    if now() > deadline {
                        bail!("baseline not reached after {timeout_s:.0}s: {msg}");
                    }
                    if msg != last {
                        say(format!("baseline: waiting: {msg}"));
                        last = msg;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every replica serving, nginx answering, Prometheus scraping every replica, no webapp
    /// alert firing and, with `agent_on`, the agent idle.
    pub async fn quiet(&self, agent_on: bool) -> Result<()> {
        let names = self.replica_names().await?;
        if names.len() != self.cfg.replicas {
            bail!("{} replicas, want {}", names.len(), self.cfg.replicas);
        }
        let serving = self.serving(&names).await;
        let down: Vec<&String> = names.iter().filter(|n| !serving[*n]).collect();
        if !down.is_empty() {
            bail!("not serving: {down:?}");
        }
        let nginx = self
            .probe
            .get(format!("{}/health", self.cfg.nginx_url))
            .send()
            .await;
        if !matches!(nginx, Ok(r) if r.status().is_success()) {
            bail!("nginx /health does not answer 200");
        }
        let up = self.mon.targets_up("webapp").await.context("Prometheus")?;
        if up != self.cfg.replicas {
            bail!("Prometheus scrapes {up} webapp replicas");
        }
        let firing = self.mon.webapp_alerts().await.context("alerts")?;
        if firing > 0 {
            bail!("{firing} webapp alert(s) firing or active");
        }
        if agent_on && !self.agent.idle().await {
            bail!("agent busy or not answering");
        }
        Ok(())
    }

    /// A replica's twin: a container with the compose labels of `template` (so the agent sees
    /// a replica of its service), on the project network as `webapp`, running `command` under
    /// a shell image with the static webapp binary mounted at /app. `template` is removed
    /// first when `replace` is set (the twin takes its name).
    pub async fn twin(
        &self,
        template: &str,
        name: &str,
        replace: bool,
        extra: &[String],
        command: &str,
    ) -> Result<()> {
        let t = self.view(template).await?;
        if replace {
            self.docker.remove(&[template.to_string()]).await?;
        }
        let mut args = self.replica_args(&t, name);
        args.extend([
            "-v".into(),
            format!("{}:/app:ro", self.cfg.webapp_bin.display()),
        ]);
        args.extend(extra.iter().cloned());
        args.extend([
            "--entrypoint".into(),
            "/bin/sh".into(),
            self.cfg.shell_image.clone(),
            "-c".into(),
            command.into(),
        ]);
        self.case_extras
            .lock()
            .expect("lock")
            .push(name.to_string());
        self.docker.run(name, &args).await?;
        Ok(())
    }

    /// `docker run` arguments that make a container a replica of `t`'s service: its labels
    /// (container number taken from `name`), environment, memory limit and network alias.
    pub fn replica_args(&self, t: &View, name: &str) -> Vec<String> {
        let mut args = Vec::new();
        let number = name.rsplit('-').next().unwrap_or("9").to_string();
        for (k, v) in &t.labels {
            let v = if k == "com.docker.compose.container-number" {
                number.clone()
            } else {
                v.clone()
            };
            args.extend(["--label".to_string(), format!("{k}={v}")]);
        }
        for e in &t.env {
            args.extend(["-e".to_string(), e.clone()]);
        }
        if let Some(net) = &t.network {
            args.extend([
                "--network".to_string(),
                net.clone(),
                "--network-alias".to_string(),
                self.cfg.service.clone(),
            ]);
        }
        if t.memory > 0 {
            args.extend(["--memory".to_string(), t.memory.to_string()]);
            args.extend(["--memory-swap".to_string(), t.memory.to_string()]);
        }
        args
    }
}
