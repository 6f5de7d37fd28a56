//! The agent under test: the real release binary as a child process on loopback, killed on drop
//! (also when the bench fails or panics).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Log level the agent runs at: `info` logs every webhook, which would measure the log sink.
pub const LOG_LEVEL: &str = "warn";
pub const TOKEN: &str = "bench-token";
/// The compose project the agent heals: empty on any machine, and the project the payload names.
pub const PROJECT: &str = "agentbench";

pub struct Agent {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Agent {
    /// Spawns the agent in `dir` (incident log, budget state and its output live there) and waits
    /// for `/healthz` to answer 200. Returns the agent and the time from spawn to that first 200.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        http: &reqwest::Client,
    ) -> anyhow::Result<(Agent, Duration)> {
        let addr = free_port()?;
        let log = dir.join("agent.log");
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(binary);
        // A clean environment (and a cwd without `.env`), so nothing on this machine changes the run.
        cmd.env_clear()
            .current_dir(dir)
            .envs([
                ("LISTEN_ADDR", addr.to_string()),
                ("HEAL_PROJECT", PROJECT.into()),
                ("HEAL_SERVICES", "webapp".into()),
                ("DOCKER_EVENTS", "false".into()),
                ("HEALTH_URL", String::new()),
                ("WEBHOOK_TOKEN", TOKEN.into()),
                (
                    "INCIDENT_LOG",
                    dir.join("incidents.jsonl").display().to_string(),
                ),
                ("LLM_PROVIDER", "none".into()),
                ("LOG_FORMAT", "json".into()),
                ("RUST_LOG", LOG_LEVEL.into()),
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut agent = Agent { child, addr, log };

        let url = format!("http://{addr}/healthz");
        let deadline = spawned + Duration::from_secs(10);
        loop {
            let ok = http
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok((agent, spawned.elapsed()));
            }
            if let Some(status) = agent.child.try_wait()? {
                bail!(
                    "agent exited with {status} before serving:\n{}",
                    agent.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!("agent not healthy after 10 s:\n{}", agent.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB (VmRSS), or `None` once the process is gone.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Fails if the agent died under load.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("agent exited with {status}:\n{}", self.log_tail()),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A loopback port free right now (the agent binds it a moment later; a clash fails loudly).
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
