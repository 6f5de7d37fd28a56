//! The check's hands on Docker: the `docker` CLI (as an operator would type it) and Docker's own
//! event stream, whose daemon-side timestamps time each stop, exit, start and healthcheck.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

const PROJECT_LABEL: &str = "com.docker.compose.project";
const SERVICE_LABEL: &str = "com.docker.compose.service";

/// Seconds since the epoch, with microseconds: the clock Docker's `timeNano` is on.
pub fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// Runs `docker ARGS`; stdout on success, an error with stderr otherwise.
pub async fn cli(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .await
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One running container of a compose service.
#[derive(Debug, Clone)]
pub struct Replica {
    pub name: String,
    /// What the webapp puts in `X-Served-By` (Docker sets the hostname to the short id).
    pub hostname: String,
    /// `docker stop`'s grace period for it: compose's `stop_grace_period`, Docker's 10 s if unset.
    pub stop_timeout_s: u64,
    pub healthy: bool,
}

/// The running containers of `service` in compose project `project`, by name.
pub async fn replicas(project: &str, service: &str) -> Result<Vec<Replica>> {
    let out = cli(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label={PROJECT_LABEL}={project}"),
        "--filter",
        &format!("label={SERVICE_LABEL}={service}"),
    ])
    .await?;
    let ids: Vec<&str> = out.split_whitespace().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["inspect", "--type", "container"];
    args.extend(&ids);
    let inspected: Value = serde_json::from_str(&cli(&args).await?).context("docker inspect")?;
    let mut found: Vec<Replica> = inspected
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| Replica {
            name: c["Name"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            hostname: c["Config"]["Hostname"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            stop_timeout_s: c["Config"]["StopTimeout"].as_u64().unwrap_or(10),
            healthy: c["State"]["Health"]["Status"] == "healthy",
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// One container event, as `docker events --format '{{json .}}'` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the epoch (the daemon's clock).
    pub at: f64,
    pub action: String,
    pub name: String,
    /// `exitCode` of a `die`, `signal` of a `kill`.
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
}

impl Event {
    pub fn parse(line: &str) -> Option<Event> {
        let v: Value = serde_json::from_str(line).ok()?;
        let attrs = &v["Actor"]["Attributes"];
        let number = |key: &str| attrs[key].as_str().and_then(|s| s.parse().ok());
        Some(Event {
            at: v["timeNano"].as_i64()? as f64 / 1e9,
            action: v["Action"].as_str()?.to_string(),
            name: attrs["name"].as_str()?.to_string(),
            exit_code: number("exitCode"),
            signal: number("signal"),
        })
    }
}

/// `docker events` for one compose service, read into memory as they come.
pub struct Events {
    child: Child,
    seen: Arc<Mutex<Vec<Event>>>,
    arrived: Arc<Notify>,
}

impl Events {
    /// Starts following; give it a moment (the check's warm-up) before acting.
    pub fn follow(project: &str, service: &str) -> Result<Events> {
        let mut child = Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                &format!("label={PROJECT_LABEL}={project}"),
                "--filter",
                &format!("label={SERVICE_LABEL}={service}"),
                "--format",
                "{{json .}}",
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting docker events")?;
        let stdout = child.stdout.take().context("docker events stdout")?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        tokio::spawn({
            let (seen, arrived) = (seen.clone(), arrived.clone());
            async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(event) = Event::parse(&line) {
                        seen.lock().expect("events lock").push(event);
                        arrived.notify_waiters();
                    }
                }
            }
        });
        Ok(Events {
            child,
            seen,
            arrived,
        })
    }

    /// The first event of `name` at or after `since` whose action satisfies `want`, waiting up
    /// to `timeout` for it.
    pub async fn wait_for(
        &self,
        name: &str,
        since: f64,
        want: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            if let Some(event) = self
                .seen
                .lock()
                .expect("events lock")
                .iter()
                .find(|e| e.name == name && e.at >= since && want(&e.action))
            {
                return Ok(event.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!("no matching event for {name} within {timeout:?}");
            }
        }
    }

    /// Events of `name` in `[from, to]`, in the order they came.
    pub fn between(&self, name: &str, from: f64, to: f64) -> Vec<Event> {
        self.seen
            .lock()
            .expect("events lock")
            .iter()
            .filter(|e| e.name == name && e.at >= from && e.at <= to)
            .cloned()
            .collect()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_die_kill_and_health_events() {
        let die = r#"{"status":"die","id":"abc","Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"137","name":"p-webapp-1"}},"time":1,"timeNano":1700000000500000000}"#;
        let e = Event::parse(die).unwrap();
        assert_eq!(e.action, "die");
        assert_eq!(e.name, "p-webapp-1");
        assert_eq!(e.exit_code, Some(137));
        assert!((e.at - 1_700_000_000.5).abs() < 1e-6);
        let kill = r#"{"Action":"kill","Actor":{"Attributes":{"name":"p-webapp-2","signal":"15"}},"timeNano":1}"#;
        assert_eq!(Event::parse(kill).unwrap().signal, Some(15));
        let health = r#"{"Action":"health_status: healthy","Actor":{"Attributes":{"name":"p-webapp-2"}},"timeNano":1}"#;
        assert_eq!(
            Event::parse(health).unwrap().action,
            "health_status: healthy"
        );
        assert_eq!(Event::parse("not json"), None);
    }
}
