//! Shared helpers for the agent's integration tests: real Docker containers labelled as compose
//! replicas, and the real agent started on port 0 (over Docker, or over the in-memory runtime).
#![allow(dead_code)]

use std::process::Command;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::Value;
use test_support::MemoryRuntime;
use webhook_receiver::clock::Clock;
use webhook_receiver::config::{Cli, Secrets};
use webhook_receiver::engine::Engine;
use webhook_receiver::secret::Secret;
use webhook_receiver::startup::Parts;
use webhook_receiver::Application;

pub mod dockerd;
pub mod providers;

/// A one-file image holding Debian's static busybox: enough for a replica that sleeps, exits on
/// demand and has a healthcheck, built locally without any registry.
pub const IMAGE: &str = "healing-test/busybox:1";

pub fn docker(args: &[&str]) -> Result<String> {
    docker_on(None, args)
}

pub fn docker_on(host: Option<&str>, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("docker");
    if let Some(h) = host {
        cmd.args(["-H", h]);
    }
    let out = cmd.args(args).output().context("running the docker CLI")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

static IMAGE_ONCE: Once = Once::new();

/// Imports the busybox image into the daemon at `host` if it is missing.
pub fn ensure_image_on(host: Option<&str>) -> Result<()> {
    if docker_on(host, &["image", "inspect", IMAGE]).is_ok() {
        return Ok(());
    }
    let busybox = "/bin/busybox";
    anyhow::ensure!(
        std::path::Path::new(busybox).exists(),
        "{busybox} is missing: install Debian's busybox-static (scripts/test does)"
    );
    let dir = tempdir("busybox-image")?;
    std::fs::create_dir_all(dir.join("bin"))?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    std::fs::copy(busybox, dir.join("bin/busybox"))?;
    for applet in ["sh", "sleep", "test", "touch", "rm", "true"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))?;
    }
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .args(["-cf", "-", "."])
        .output()?;
    anyhow::ensure!(tar.status.success(), "tar failed");
    let mut cmd = Command::new("docker");
    if let Some(h) = host {
        cmd.args(["-H", h]);
    }
    let mut child = cmd
        .args(["import", "-", IMAGE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(&tar.stdout)?;
    anyhow::ensure!(child.wait()?.success(), "docker import failed");
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}

pub fn ensure_image() {
    IMAGE_ONCE.call_once(|| ensure_image_on(None).expect("test image"));
}

pub fn tempdir(tag: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "healing-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The start of every test project's name (`TEST_PROJECT_PREFIX`, default `ht`): on a daemon
/// shared by several people, each keeps to their own names.
fn prefix() -> String {
    std::env::var("TEST_PROJECT_PREFIX").unwrap_or_else(|_| "ht".to_string())
}

/// A fake compose project: containers carrying compose labels. Removed on drop.
pub struct Project {
    pub name: String,
    pub host: Option<String>,
}

/// How a test replica behaves.
#[derive(Clone, Copy)]
pub enum Replica {
    /// Sleeps; healthy unless /tmp/unhealthy exists (/tmp is a tmpfs, so a restart clears it).
    Healthy,
    /// Exits with code 1 shortly after every start: a crash loop.
    CrashLoop,
}

impl Project {
    pub fn new(tag: &str) -> Self {
        ensure_image();
        let name = format!("{}{}{}", prefix(), tag, std::process::id());
        let p = Project { name, host: None };
        p.cleanup();
        p
    }

    pub fn on_host(tag: &str, host: &str) -> Self {
        let name = format!("{}{}{}", prefix(), tag, std::process::id());
        Project {
            name,
            host: Some(host.to_string()),
        }
    }

    pub fn docker(&self, args: &[&str]) -> Result<String> {
        docker_on(self.host.as_deref(), args)
    }

    /// Starts replica `n` of `service` and returns its container name (`<project>-<service>-<n>`).
    pub fn add(&self, service: &str, n: u32, kind: Replica) -> String {
        self.add_labelled(service, n, kind, &[])
    }

    /// As [`Project::add`], with extra labels (`healstack.action=notify`, ...).
    pub fn add_labelled(&self, service: &str, n: u32, kind: Replica, labels: &[&str]) -> String {
        self.add_with(service, n, kind, labels, &[])
    }

    /// As [`Project::add_labelled`], with extra `docker run` arguments (`-p`, ...).
    pub fn add_with(
        &self,
        service: &str,
        n: u32,
        kind: Replica,
        labels: &[&str],
        run_args: &[&str],
    ) -> String {
        let name = format!("{}-{service}-{n}", self.name);
        let project_label = format!("com.docker.compose.project={}", self.name);
        let service_label = format!("com.docker.compose.service={service}");
        let number_label = format!("com.docker.compose.container-number={n}");
        let script = match kind {
            Replica::Healthy => "echo started; trap 'exit 0' TERM; while true; do sleep 1; done",
            Replica::CrashLoop => "echo started; sleep 0.3; exit 1",
        };
        let mut args: Vec<&str> = vec!["run", "-d"];
        args.extend(run_args);
        for l in labels {
            args.push("--label");
            args.push(l);
        }
        args.extend([
            "--name",
            &name,
            "--label",
            &project_label,
            "--label",
            &service_label,
            "--label",
            &number_label,
            "--label",
            "healing-test=1",
            "--tmpfs",
            "/tmp",
            "--health-cmd",
            "test ! -f /tmp/unhealthy",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "--health-timeout",
            "1s",
            IMAGE,
            "sh",
            "-c",
            script,
        ]);
        self.docker(&args).expect("docker run");
        name
    }

    pub fn kill(&self, name: &str) {
        self.docker(&["kill", name]).expect("docker kill");
        self.wait_status(name, "exited", Duration::from_secs(10));
    }

    pub fn inspect(&self, name: &str) -> Value {
        let out = self.docker(&["inspect", name]).expect("docker inspect");
        let v: Value = serde_json::from_str(&out).expect("inspect json");
        v[0].clone()
    }

    pub fn status(&self, name: &str) -> String {
        self.inspect(name)["State"]["Status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn health(&self, name: &str) -> String {
        self.inspect(name)["State"]["Health"]["Status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.status(name) != status {
            assert!(
                Instant::now() < deadline,
                "{name} did not reach {status} (is {})",
                self.status(name)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_healthy(&self, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.health(name) != "healthy" {
            assert!(
                Instant::now() < deadline,
                "{name} did not become healthy (is {})",
                self.health(name)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// How many times `name` started since `since`: each start of a test replica writes
    /// `started` to its log. (Not from the daemon's events: it keeps its last 256 only, some
    /// seconds' worth on a daemon shared with other stacks' healthchecks.)
    pub fn starts_since(&self, name: &str, since: chrono::DateTime<chrono::Utc>) -> usize {
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let out = self
            .docker(&["logs", "--since", &since, name])
            .expect("docker logs");
        out.lines().filter(|l| l.trim() == "started").count()
    }

    pub fn cleanup(&self) {
        let filter = format!("label=com.docker.compose.project={}", self.name);
        if let Ok(ids) = self.docker(&["ps", "-aq", "--filter", &filter]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The token test agents check unless a test gives its own (every endpoint but health and
/// metrics needs one).
pub const TEST_TOKEN: &str = "test-token-5f0c1d";

/// The real agent, serving on 127.0.0.1:<port 0> in this process.
pub struct Agent {
    pub url: String,
    /// The bearer token it checks.
    pub token: String,
    pub engine: Engine,
    pub dir: std::path::PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the agent for `project` with extra `--flag value` arguments.
pub async fn spawn_agent(project: &str, extra: &[&str]) -> Agent {
    spawn_agent_with(project, extra, Secrets::default()).await
}

/// A webhook token and no API keys (secrets are never flags).
pub fn token(t: &str) -> Secrets {
    Secrets {
        webhook_token: Secret::exact(t),
        ..Secrets::default()
    }
}

/// A Gemini key (`GEMINI_API_KEY`).
pub fn gemini_key(k: &str) -> Secrets {
    Secrets {
        gemini_api_key: Secret::new(k),
        ..Secrets::default()
    }
}

/// An OpenAI key (`OPENAI_API_KEY`).
pub fn openai_key(k: &str) -> Secrets {
    Secrets {
        openai_api_key: Secret::new(k),
        ..Secrets::default()
    }
}

/// [`spawn_agent`] with secrets (as the agent reads them from its environment).
pub async fn spawn_agent_with(project: &str, extra: &[&str], mut secrets: Secrets) -> Agent {
    // RUST_LOG=info shows the agent's log in a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let dir = tempdir("agent").expect("tempdir");
    if secrets.webhook_token.is_none() {
        secrets.webhook_token = Secret::exact(TEST_TOKEN);
    }
    let token = secrets
        .webhook_token
        .as_ref()
        .map(|t| t.expose().to_string())
        .unwrap_or_default();
    let log = dir.join("incidents.jsonl");
    let mut args = vec![
        "webhook-receiver".to_string(),
        "--listen-addr".into(),
        "127.0.0.1:0".into(),
        "--heal-project".into(),
        project.into(),
        "--health-url".into(),
        "".into(),
        "--incident-log".into(),
        log.display().to_string(),
        "--docker-events".into(),
        "false".into(),
        "--debounce-ms".into(),
        "50".into(),
        "--restart-backoff-ms".into(),
        "100".into(),
        "--verify-timeout-secs".into(),
        "20".into(),
        // Tests decide when the agent looks (the start-up reconcile still happens).
        "--reconcile-interval".into(),
        "0s".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut cli = Cli::try_parse_from(&args).expect("test flags parse");
    cli.settings.secrets = secrets;
    cli.settings.validate().expect("test settings valid");
    let app = Application::build(&cli.settings)
        .await
        .expect("agent builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    let engine = app.engine();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    Agent {
        url,
        token,
        engine,
        dir,
        shutdown: Some(tx),
        task,
    }
}

/// The real agent over the in-memory runtime `rt` (which also answers its probes), healing
/// project `p` with no incident log unless `args` (extra `--flag value`s) say otherwise, serving
/// on 127.0.0.1:<port 0> in this process. Returns its URL and the sender that stops it (dropping
/// the sender stops it too). No Docker needed.
pub async fn start_in_memory(
    rt: Arc<MemoryRuntime>,
    args: &[&str],
    secrets: Secrets,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut all = vec![
        "webhook-receiver",
        "--listen-addr",
        "127.0.0.1:0",
        "--heal-project",
        "p",
        "--incident-log",
        "",
    ];
    all.extend_from_slice(args);
    let mut cli = Cli::try_parse_from(all).expect("test flags parse");
    cli.settings.secrets = secrets;
    cli.settings.validate().expect("test settings valid");
    let app = Application::build_with(
        &cli.settings,
        Parts {
            runtime: rt.clone(),
            prober: Some(rt),
            clock: Clock::system(),
        },
    )
    .await
    .expect("agent builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    (url, tx)
}

impl Agent {
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    pub async fn post_alert(&self, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/webhook", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("post webhook")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }

    pub async fn incidents(&self) -> Vec<Value> {
        self.get_json("/incidents?limit=1000")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the engine has no run queued or in flight.
    /// Waits for the start-up reconcile to be done (before a test injects its fault).
    pub async fn started(&self) {
        self.settle().await;
    }

    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            self.engine.wait_idle(Duration::from_secs(60)).await,
            "healing runs did not finish"
        );
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A firing Alertmanager webhook (payload version 4) for `alerts` of (alertname, labels).
pub fn alert_payload(alerts: &[(&str, &[(&str, &str)])]) -> Value {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(name, labels)| {
            let mut l = serde_json::Map::new();
            l.insert("alertname".into(), (*name).into());
            for (k, v) in labels.iter() {
                l.insert((*k).into(), (*v).into());
            }
            serde_json::json!({
                "status": "firing",
                "labels": l,
                "annotations": { "summary": "replica down" },
                "startsAt": chrono::Utc::now().to_rfc3339(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": "abc123"
            })
        })
        .collect();
    serde_json::json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"WebappReplicaMissing\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "healing-agent",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts
    })
}

pub fn webapp_alert() -> Value {
    alert_payload(&[(
        "WebappReplicaMissing",
        &[("service", "webapp"), ("severity", "critical")],
    )])
}
