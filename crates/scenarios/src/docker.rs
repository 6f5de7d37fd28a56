//! The harness's hands on Docker: the `docker` CLI and `docker compose`. Every operation that
//! changes a container is recorded with its time window ([`Op`]), so the events it causes can be
//! told apart from the agent's ([`crate::events::agent_actions`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// Seconds since the epoch, with microseconds.
pub fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// What kind of change the harness made, and so which container events it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Kill,
    /// `docker kill --signal X` with a signal that does not end the process (SIGSTOP, SIGCONT).
    Signal,
    Stop,
    Start,
    /// `docker restart`: stop (kill, die, stop) and start.
    Restart,
    /// `docker update` (a restart policy).
    Update,
    Pause,
    Unpause,
    /// `docker run -d`: create and start.
    Run,
    Remove,
    /// `docker compose ...`: anything in the project may change.
    Compose,
}

impl OpKind {
    /// Whether an event `action` on a target of this operation is the operation's own doing.
    pub fn causes(self, action: &str) -> bool {
        match self {
            OpKind::Kill => matches!(action, "kill" | "die"),
            OpKind::Signal => action == "kill",
            OpKind::Stop => matches!(action, "kill" | "die" | "stop"),
            OpKind::Start => action == "start",
            OpKind::Restart => matches!(action, "kill" | "die" | "stop" | "start" | "restart"),
            OpKind::Update => action == "update",
            OpKind::Pause => action == "pause",
            OpKind::Unpause => action == "unpause",
            OpKind::Run => matches!(action, "create" | "start"),
            OpKind::Remove => matches!(action, "kill" | "die" | "stop" | "destroy"),
            OpKind::Compose => true,
        }
    }
}

/// One change the harness made.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    pub kind: OpKind,
    pub what: String,
    /// Container names it targets (empty for compose operations).
    pub containers: Vec<String>,
    /// For compose operations: every container of this project.
    pub project: Option<String>,
    pub start: f64,
    pub end: f64,
    pub ok: bool,
}

#[derive(Clone)]
pub struct Docker {
    repo_root: PathBuf,
    compose_env_file: Option<String>,
    ops: Arc<Mutex<Vec<Op>>>,
}

/// A replica of a compose service as `docker ps -a` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub number: String,
}

impl Docker {
    pub fn new(repo_root: PathBuf) -> Self {
        Docker {
            repo_root,
            compose_env_file: std::env::var("COMPOSE_ENV_FILE")
                .ok()
                .filter(|s| !s.is_empty()),
            ops: Arc::default(),
        }
    }

    /// Every operation recorded so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("ops lock").clone()
    }

    /// Runs `docker ARGS`; stdout on success, an error with stderr otherwise.
    pub async fn cli(&self, args: &[&str]) -> Result<String> {
        self.cli_env(args, &[]).await
    }

    /// [`Docker::cli`] with `env` set (`None`: removed) for the command (compose reads
    /// variables from it).
    async fn cli_env(&self, args: &[&str], env: &[(&str, Option<&str>)]) -> Result<String> {
        let mut cmd = tokio::process::Command::new("docker");
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let out = cmd
            .args(args)
            .current_dir(&self.repo_root)
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

    async fn recorded(
        &self,
        kind: OpKind,
        containers: &[String],
        project: Option<&str>,
        args: &[&str],
    ) -> Result<String> {
        self.recorded_env(kind, containers, project, args, &[])
            .await
    }

    async fn recorded_env(
        &self,
        kind: OpKind,
        containers: &[String],
        project: Option<&str>,
        args: &[&str],
        env: &[(&str, Option<&str>)],
    ) -> Result<String> {
        let start = now();
        let result = self.cli_env(args, env).await;
        self.ops.lock().expect("ops lock").push(Op {
            kind,
            what: format!("docker {}", args.join(" ")),
            containers: containers.to_vec(),
            project: project.map(str::to_string),
            start,
            end: now(),
            ok: result.is_ok(),
        });
        result
    }

    /// Records a change the harness made without the `docker` CLI (a daemon restart).
    pub fn record(&self, op: Op) {
        self.ops.lock().expect("ops lock").push(op);
    }

    pub async fn kill(&self, names: &[String]) -> Result<()> {
        let mut args = vec!["kill"];
        args.extend(names.iter().map(String::as_str));
        self.recorded(OpKind::Kill, names, None, &args).await?;
        Ok(())
    }

    /// SIGKILL to the container's main process by its host pid, as an outside hand (the kernel,
    /// a script, another tool) would: Docker sees a death with exit 137 and no `kill` event, and
    /// does not mark the container as stopped by hand (as `docker kill` does). Needs the right to
    /// signal the process (root); otherwise falls back to `docker kill`. Says which it used.
    pub async fn kill_by_pid(&self, name: &str) -> Result<String> {
        let pid = self
            .cli(&["inspect", "-f", "{{.State.Pid}}", name])
            .await?
            .trim()
            .to_string();
        if pid.is_empty() || pid == "0" {
            bail!("{name} is not running (pid {pid:?})");
        }
        let names = [name.to_string()];
        let start = now();
        let out = tokio::process::Command::new("kill")
            .args(["-KILL", &pid])
            .output()
            .await
            .context("running kill")?;
        self.record(Op {
            kind: OpKind::Kill,
            what: format!("kill -KILL {pid} ({name})"),
            containers: names.to_vec(),
            project: None,
            start,
            end: now(),
            ok: out.status.success(),
        });
        if out.status.success() {
            return Ok(format!("kill -KILL {pid}"));
        }
        self.kill(&names).await?;
        Ok(format!(
            "docker kill (kill -KILL {pid} failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }

    /// `docker restart -t T`: a fresh process (leaked memory gone, Docker's restart backoff reset).
    pub async fn restart(&self, names: &[String], timeout_secs: u32) -> Result<()> {
        let t = timeout_secs.to_string();
        let mut args = vec!["restart", "-t", t.as_str()];
        args.extend(names.iter().map(String::as_str));
        self.recorded(OpKind::Restart, names, None, &args).await?;
        Ok(())
    }

    /// `docker update --restart POLICY`.
    pub async fn set_restart_policy(&self, names: &[String], policy: &str) -> Result<()> {
        let mut args = vec!["update", "--restart", policy];
        args.extend(names.iter().map(String::as_str));
        self.recorded(OpKind::Update, names, None, &args).await?;
        Ok(())
    }

    /// `docker kill --signal SIG`: SIGSTOP freezes the process, SIGCONT thaws it.
    pub async fn signal(&self, name: &str, signal: &str) -> Result<()> {
        let names = [name.to_string()];
        self.recorded(
            OpKind::Signal,
            &names,
            None,
            &["kill", "--signal", signal, name],
        )
        .await?;
        Ok(())
    }

    pub async fn stop(&self, names: &[String], timeout_secs: u32) -> Result<()> {
        let t = timeout_secs.to_string();
        let mut args = vec!["stop", "-t", t.as_str()];
        args.extend(names.iter().map(String::as_str));
        self.recorded(OpKind::Stop, names, None, &args).await?;
        Ok(())
    }

    pub async fn start(&self, names: &[String]) -> Result<()> {
        let mut args = vec!["start"];
        args.extend(names.iter().map(String::as_str));
        self.recorded(OpKind::Start, names, None, &args).await?;
        Ok(())
    }

    pub async fn pause(&self, name: &str) -> Result<()> {
        let names = [name.to_string()];
        self.recorded(OpKind::Pause, &names, None, &["pause", name])
            .await?;
        Ok(())
    }

    pub async fn unpause(&self, name: &str) -> Result<()> {
        let names = [name.to_string()];
        self.recorded(OpKind::Unpause, &names, None, &["unpause", name])
            .await?;
        Ok(())
    }

    /// `docker rm -f`; containers that do not exist are fine.
    pub async fn remove(&self, names: &[String]) -> Result<()> {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(names.iter().map(String::as_str));
        match self.recorded(OpKind::Remove, names, None, &args).await {
            Err(e) if e.to_string().contains("No such container") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `docker run -d --name NAME ARGS...`: the new container's id.
    pub async fn run(&self, name: &str, args: &[String]) -> Result<String> {
        let mut all = vec!["run", "-d", "--name", name];
        all.extend(args.iter().map(String::as_str));
        let out = self
            .recorded(OpKind::Run, &[name.to_string()], None, &all)
            .await?;
        Ok(out.trim().to_string())
    }

    /// `docker exec` (no container event the agent could be blamed for: exec events are ignored).
    pub async fn exec(&self, name: &str, cmd: &[&str]) -> Result<String> {
        let mut args = vec!["exec", name];
        args.extend_from_slice(cmd);
        self.cli(&args).await
    }

    /// `docker compose -p PROJECT ARGS` in the repository, with the compose files and variables
    /// of the environment (the script sets COMPOSE_FILE and the images).
    pub async fn compose(&self, project: &str, args: &[&str]) -> Result<String> {
        self.compose_env(project, args, &[]).await
    }

    /// [`Docker::compose`] with variables of its own on top of the environment's (`None`:
    /// left unset), which a service's `environment:` passes through.
    pub async fn compose_env(
        &self,
        project: &str,
        args: &[&str],
        env: &[(&str, Option<&str>)],
    ) -> Result<String> {
        let mut all = vec!["compose"];
        if let Some(f) = &self.compose_env_file {
            all.extend(["--env-file", f.as_str()]);
        }
        all.extend(["-p", project]);
        all.extend_from_slice(args);
        self.recorded_env(OpKind::Compose, &[], Some(project), &all, env)
            .await
    }

    /// `docker inspect` of each name that exists (missing ones are left out).
    pub async fn inspect(&self, names: &[String]) -> Result<Vec<Value>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["inspect", "--type", "container"];
        args.extend(names.iter().map(String::as_str));
        let out = tokio::process::Command::new("docker")
            .args(&args)
            .output()
            .await
            .context("running docker inspect")?;
        // Exit 1 when some name is missing; stdout still holds the ones found.
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_str(&text).context("docker inspect output")?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Containers (running or not) of a compose project's service, by name.
    pub async fn list(&self, project: &str, service: &str) -> Result<Vec<Listed>> {
        let p = format!("label={PROJECT_LABEL}={project}");
        let s = format!("label={SERVICE_LABEL}={service}");
        let out = self
            .cli(&[
                "ps",
                "-a",
                "--no-trunc",
                "--filter",
                &p,
                "--filter",
                &s,
                "--format",
                "{{.ID}}\t{{.Names}}\t{{.Label \"com.docker.compose.container-number\"}}",
            ])
            .await?;
        let mut v: Vec<Listed> = out
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some(Listed {
                    id: f.next()?.to_string(),
                    name: f.next()?.to_string(),
                    number: f.next().unwrap_or_default().to_string(),
                })
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }
}
