//! Stopping and starting the Docker daemon the way the test command starts it (scripts/lib.sh's
//! `ensure_dockerd`): SIGTERM to dockerd, wait for it to exit, start it again with
//! `nohup dockerd >>/var/log/dockerd.log 2>&1 &`, wait for `docker info`. What a host reboot
//! or a Docker upgrade does to a stack, in seconds.
//!
//! This stops every container on the daemon: only the daemon-restart cases call it, and only
//! when the run was told the daemon is the test's to restart.
//!
//! By default the system's daemon (`/var/run/docker.pid`, `/var/log/dockerd.log`). For
//! development beside other people's stacks, a private dockerd (its own socket in
//! `DOCKER_HOST`, data root and bridge) can be the one restarted instead:
//! `SCENARIOS_DOCKERD_PIDFILE` names its pid file, `SCENARIOS_DOCKERD_LOG` its log, and
//! `SCENARIOS_DOCKERD_ARGS` the arguments it was started with (the same are used again).
//! Beware (seen with 20.10, on every restart): a private dockerd started again on its existing
//! data root deletes the host's `docker0`, which breaks the shared daemon's default bridge (and
//! `docker build`) until the interface is made again (`ip link add docker0 type bridge`, its
//! address, `up`) or that daemon restarts. Run with `--iptables=false` beside a daemon that
//! sets the FORWARD policy to DROP, its containers reach each other only once a rule lets its
//! address pool through (`iptables -I FORWARD -s POOL -d POOL -j ACCEPT`). README, "Never worse
//! than Docker's restart policy", has the whole recipe.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::docker::now;

/// The daemon to restart: its pid file, its log, and the arguments it runs with.
struct Daemon {
    pid_file: String,
    log_file: String,
    args: Vec<String>,
}

impl Daemon {
    fn from_env() -> Daemon {
        let var = |k: &str, d: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| d.to_string())
        };
        Daemon {
            pid_file: var("SCENARIOS_DOCKERD_PIDFILE", "/var/run/docker.pid"),
            log_file: var("SCENARIOS_DOCKERD_LOG", "/var/log/dockerd.log"),
            args: var("SCENARIOS_DOCKERD_ARGS", "")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        }
    }
}

/// What one restart took, in seconds since the epoch.
#[derive(Debug, Clone, Serialize)]
pub struct Restarted {
    pub old_pid: u32,
    pub new_pid: Option<u32>,
    /// SIGTERM sent.
    pub term_at: f64,
    /// The old daemon's process is gone.
    pub exited_at: f64,
    /// The new daemon answers `docker info`.
    pub answered_at: f64,
}

/// Why the daemon cannot be restarted here, if it cannot: not root, or no dockerd of ours
/// (one started by scripts/lib.sh, recorded in /var/run/docker.pid).
pub fn refuse_reason() -> Option<String> {
    if !is_root() {
        return Some("restarting dockerd needs root (it signals and starts the daemon)".into());
    }
    match daemon_pid(&Daemon::from_env()) {
        Ok(_) => None,
        Err(e) => Some(format!("{e:#}")),
    }
}

/// SIGTERM, wait for the exit (dockerd stops every container first), start a new daemon,
/// wait until it answers.
pub async fn restart() -> Result<Restarted> {
    if let Some(why) = refuse_reason() {
        bail!("cannot restart the Docker daemon: {why}");
    }
    let d = Daemon::from_env();
    let old_pid = daemon_pid(&d)?;
    let term_at = now();
    signal(old_pid, "-TERM").await?;
    // dockerd gives each container its stop timeout (the agent's is 30 s) before it exits.
    let deadline = term_at + 120.0;
    while alive(old_pid) {
        if now() > deadline {
            bail!("dockerd (pid {old_pid}) still runs 120 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exited_at = now();
    // A daemon that did not exit cleanly leaves its pid file, and a new one refuses to start
    // while it is there (as scripts/lib.sh's ensure_dockerd knows).
    if read_pid(&d).is_some_and(|p| !alive(p)) {
        let _ = std::fs::remove_file(&d.pid_file);
    }
    start_daemon(&d)?;
    let deadline = now() + 60.0;
    loop {
        if docker_answers().await {
            break;
        }
        if now() > deadline {
            bail!(
                "the new dockerd did not answer `docker info` within 60 s (see {})",
                d.log_file
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Restarted {
        old_pid,
        new_pid: read_pid(&d),
        term_at,
        exited_at,
        answered_at: now(),
    })
}

/// `nohup dockerd >>/var/log/dockerd.log 2>&1 &`, in a process group of its own and with no
/// descriptor of ours: the daemon must outlive this process, and must not hold a lock file or a
/// pipe the harness was started with (a `flock` around the run would otherwise stay held for
/// as long as the daemon runs).
fn start_daemon(d: &Daemon) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&d.log_file)
        .with_context(|| format!("opening {}", d.log_file))?;
    // bash, not sh: dash cannot name a descriptor above 9 in a redirection.
    let script = r#"for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done; exec nohup dockerd "$@""#;
    std::process::Command::new("bash")
        .args(["-c", script, "bash"])
        .args(&d.args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting dockerd")?;
    Ok(())
}

async fn docker_answers() -> bool {
    tokio::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

fn read_pid(d: &Daemon) -> Option<u32> {
    std::fs::read_to_string(&d.pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The running dockerd's pid, from its pid file, checked against the process's name.
fn daemon_pid(d: &Daemon) -> Result<u32> {
    let pid = read_pid(d).with_context(|| {
        format!(
            "no {}: this dockerd was not started like scripts/lib.sh starts it",
            d.pid_file
        )
    })?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "dockerd" {
        bail!(
            "{} names pid {pid}, which is not a running dockerd ({comm:?})",
            d.pid_file
        );
    }
    Ok(pid)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            // A zombie (state Z) has exited; only its parent has not reaped it yet.
            .map(|s| {
                !s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
}

async fn signal(pid: u32, sig: &str) -> Result<()> {
    let out = tokio::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .output()
        .await
        .context("running kill")?;
    if !out.status.success() {
        bail!(
            "kill {sig} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn is_root() -> bool {
    // Effective uid: the second field of /proc/self/status's Uid line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
