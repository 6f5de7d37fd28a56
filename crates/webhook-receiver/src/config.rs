//! Configuration: environment variables (`.env` honoured) with matching CLI flags, sane defaults,
//! and one validation pass at start that names the variable at fault.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand, ValueEnum};

use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LlmProviderChoice {
    Auto,
    Gemini,
    Openai,
    None,
}

#[derive(Debug, Parser)]
#[command(
    name = "webhook-receiver",
    version,
    about = "Self-healing agent for Docker Compose services",
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 when this agent's /healthz answers 200 (for the Docker healthcheck; no shell needed).
    Healthcheck,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Address to serve the webhook, /healthz, /metrics and /incidents on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:5001")]
    pub listen_addr: SocketAddr,
    /// Bearer token Alertmanager must send; empty disables the check.
    #[arg(
        long,
        env = "WEBHOOK_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    pub webhook_token: String,
    /// Compose services the agent may heal, comma-separated.
    #[arg(
        long,
        env = "HEAL_SERVICES",
        default_value = "webapp",
        value_delimiter = ','
    )]
    pub heal_services: Vec<String>,
    /// Compose project to act in; default: the project of the agent's own container.
    #[arg(long, env = "HEAL_PROJECT", default_value = "")]
    pub heal_project: String,
    /// Docker daemon to use, e.g. unix:///var/run/docker.sock; empty: the local default.
    #[arg(long, env = "DOCKER_HOST", default_value = "")]
    pub docker_host: String,
    /// Service-level health URL checked after a restart (through the load balancer); empty to skip.
    #[arg(long, env = "HEALTH_URL", default_value = "http://nginx/health")]
    pub health_url: String,
    /// Diagnose and record what would be done, change nothing.
    #[arg(long, env = "DRY_RUN", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub dry_run: bool,
    /// React to Docker events (die, oom, unhealthy) without waiting for an alert.
    #[arg(long, env = "DOCKER_EVENTS", default_value = "true", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub docker_events: bool,
    /// Restarts allowed per replica within the window before the agent gives up on it.
    #[arg(long, env = "RESTART_BUDGET", default_value_t = 5)]
    pub restart_budget: u32,
    #[arg(long, env = "RESTART_WINDOW_SECS", default_value_t = 600)]
    pub restart_window_secs: u64,
    /// Backoff before the 2nd restart of a replica within the window; doubles each time.
    #[arg(long, env = "RESTART_BACKOFF_MS", default_value_t = 1000)]
    pub restart_backoff_ms: u64,
    #[arg(long, env = "RESTART_BACKOFF_MAX_MS", default_value_t = 30_000)]
    pub restart_backoff_max_ms: u64,
    /// A replica that ran this long before failing gets a fresh budget (not a crash loop); 0: never.
    #[arg(long, env = "RESTART_STABLE_SECS", default_value_t = 10)]
    pub restart_stable_secs: u64,
    /// How long verification may wait for restarted replicas to serve.
    #[arg(long, env = "VERIFY_TIMEOUT_SECS", default_value_t = 30)]
    pub verify_timeout_secs: u64,
    /// Pause before a run, so triggers arriving together become one run.
    #[arg(long, env = "DEBOUNCE_MS", default_value_t = 100)]
    pub debounce_ms: u64,
    /// JSON-lines incident log; empty keeps incidents in memory only.
    #[arg(long, env = "INCIDENT_LOG", default_value = "incidents.jsonl")]
    pub incident_log: String,
    /// Restart budget state; default: restart-budget.json next to the incident log.
    #[arg(long, env = "BUDGET_STATE", default_value = "")]
    pub budget_state: String,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, env = "WEBHOOK_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub webhook_max_bytes: usize,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// auto: Gemini if its key is set, else OpenAI-compatible if configured, else the runbook.
    #[arg(long, env = "LLM_PROVIDER", value_enum, default_value = "auto")]
    pub llm_provider: LlmProviderChoice,
    #[arg(
        long,
        env = "GEMINI_API_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    pub gemini_api_key: String,
    /// Accepted in place of GEMINI_API_KEY.
    #[arg(
        long,
        env = "GOOGLE_API_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    pub google_api_key: String,
    #[arg(long, env = "GEMINI_MODEL", default_value = "gemini-3.5-flash")]
    pub gemini_model: String,
    #[arg(
        long,
        env = "GEMINI_BASE_URL",
        default_value = "https://generativelanguage.googleapis.com"
    )]
    pub gemini_base_url: String,
    #[arg(
        long,
        env = "OPENAI_API_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    pub openai_api_key: String,
    /// e.g. https://api.openai.com/v1 or http://ollama:11434/v1
    #[arg(long, env = "OPENAI_BASE_URL", default_value = "")]
    pub openai_base_url: String,
    /// Required with the OpenAI-compatible provider (e.g. gpt-4o-mini, llama3.1).
    #[arg(long, env = "OPENAI_MODEL", default_value = "")]
    pub openai_model: String,
    #[arg(long, env = "LLM_MAX_TURNS", default_value_t = 8)]
    pub llm_max_turns: u32,
    #[arg(long, env = "LLM_TIMEOUT_SECS", default_value_t = 60)]
    pub llm_timeout_secs: u64,

    /// Periodic look at every healable service from live state (0s: off).
    #[arg(long, env = "RECONCILE_INTERVAL", default_value = "10s", value_parser = duration)]
    pub reconcile_interval: Duration,
    /// Port of each replica the agent probes itself (`http://<replica ip>:PORT<PATH>`); empty: no probe.
    #[arg(long, env = "REPLICA_PROBE_PORT", default_value = "8000")]
    pub replica_probe_port: String,
    #[arg(long, env = "REPLICA_PROBE_PATH", default_value = "/health")]
    pub replica_probe_path: String,
    /// Two probes in a row without an answer within this time: the replica is hung.
    #[arg(long, env = "REPLICA_PROBE_TIMEOUT", default_value = "1s", value_parser = duration)]
    pub replica_probe_timeout: Duration,
    /// The Nth heal of the same replica for the same kind of failure within ESCALATE_WINDOW escalates (0: never).
    #[arg(long, env = "ESCALATE_AFTER", default_value_t = 3)]
    pub escalate_after: u32,
    #[arg(long, env = "ESCALATE_WINDOW", default_value = "10m", value_parser = duration)]
    pub escalate_window: Duration,
    /// Starts of a replica that crashes on start before the agent gives up on it and escalates.
    #[arg(long, env = "CRASH_ON_START_TRIES", default_value_t = 2)]
    pub crash_on_start_tries: u32,
    /// `json` or `slack` (incoming-webhook format) for NOTIFY_URL (read from the environment only).
    #[arg(long, env = "NOTIFY_FORMAT", value_enum, default_value = "json")]
    pub notify_format: NotifyFormatChoice,
    #[arg(long, env = "NOTIFY_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub notify_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NotifyFormatChoice {
    Json,
    Slack,
}

/// A duration as Prometheus users write them (`500ms`, `30s`, `10m`), or plain seconds.
fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 500ms, 30s, 10m)"))
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

fn bad(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

impl Settings {
    /// Checks everything that clap's types do not, once, at start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if self.services().is_empty() {
            return Err(bad("HEAL_SERVICES", "name at least one compose service"));
        }
        if let Some(s) = self.services().iter().find(|s| !valid_name(s)) {
            return Err(bad(
                "HEAL_SERVICES",
                format!("{s:?} is not a compose service name"),
            ));
        }
        if !self.heal_project.is_empty() && !valid_name(&self.heal_project) {
            return Err(bad(
                "HEAL_PROJECT",
                format!("{:?} is not a compose project name", self.heal_project),
            ));
        }
        if !self.health_url.is_empty() {
            let url = reqwest::Url::parse(&self.health_url)
                .map_err(|e| bad("HEALTH_URL", e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("HEALTH_URL", "must be an http(s) URL"));
            }
        }
        if self.restart_budget == 0 {
            return Err(bad("RESTART_BUDGET", "must be at least 1"));
        }
        if self.restart_window_secs == 0 {
            return Err(bad("RESTART_WINDOW_SECS", "must be at least 1"));
        }
        if self.verify_timeout_secs == 0 {
            return Err(bad("VERIFY_TIMEOUT_SECS", "must be at least 1"));
        }
        if self.webhook_max_bytes < 1024 {
            return Err(bad("WEBHOOK_MAX_BYTES", "must be at least 1024"));
        }
        if self.llm_max_turns == 0 {
            return Err(bad("LLM_MAX_TURNS", "must be at least 1"));
        }
        if self.llm_timeout_secs == 0 {
            return Err(bad("LLM_TIMEOUT_SECS", "must be at least 1"));
        }
        let within = |var: &'static str, d: Duration, min: Duration, max: Duration| {
            if d < min || d > max {
                Err(bad(
                    var,
                    format!("must be from {min:?} to {max:?}, got {d:?}"),
                ))
            } else {
                Ok(())
            }
        };
        if !self.reconcile_interval.is_zero() {
            within(
                "RECONCILE_INTERVAL",
                self.reconcile_interval,
                Duration::from_secs(1),
                Duration::from_secs(24 * 3600),
            )?;
        }
        within(
            "REPLICA_PROBE_TIMEOUT",
            self.replica_probe_timeout,
            Duration::from_millis(50),
            Duration::from_secs(30),
        )?;
        within(
            "ESCALATE_WINDOW",
            self.escalate_window,
            Duration::from_secs(1),
            Duration::from_secs(7 * 24 * 3600),
        )?;
        within(
            "NOTIFY_TIMEOUT",
            self.notify_timeout,
            Duration::from_millis(100),
            Duration::from_secs(60),
        )?;
        if self.escalate_after > 1000 {
            return Err(bad(
                "ESCALATE_AFTER",
                "must be at most 1000 (0 turns escalation off)",
            ));
        }
        if !(1..=100).contains(&self.crash_on_start_tries) {
            return Err(bad("CRASH_ON_START_TRIES", "must be from 1 to 100"));
        }
        self.replica_probe_port()?;
        if !self.replica_probe_path.starts_with('/') {
            return Err(bad("REPLICA_PROBE_PATH", "must start with /"));
        }
        if let Some(url) = notify_url() {
            let u = reqwest::Url::parse(url.expose()).map_err(|_| {
                bad(
                    "NOTIFY_URL",
                    "is not a URL (its value is not shown: it may hold a secret)",
                )
            })?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(bad("NOTIFY_URL", "must be an http(s) URL"));
            }
        }
        for (var, url) in [
            ("GEMINI_BASE_URL", &self.gemini_base_url),
            ("OPENAI_BASE_URL", &self.openai_base_url),
        ] {
            if !url.is_empty() {
                reqwest::Url::parse(url).map_err(|e| bad(var, e.to_string()))?;
            }
        }
        if self.llm_provider == LlmProviderChoice::Gemini && self.gemini_key().is_none() {
            return Err(bad(
                "GEMINI_API_KEY",
                "LLM_PROVIDER=gemini needs GEMINI_API_KEY (or GOOGLE_API_KEY)",
            ));
        }
        if self.llm_provider == LlmProviderChoice::Openai
            && self.openai_base_url.is_empty()
            && self.openai_api_key.is_empty()
        {
            return Err(bad(
                "OPENAI_BASE_URL",
                "LLM_PROVIDER=openai needs OPENAI_API_KEY or OPENAI_BASE_URL",
            ));
        }
        Ok(())
    }

    pub fn services(&self) -> Vec<String> {
        self.heal_services
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn token(&self) -> Option<Secret> {
        Secret::exact(self.webhook_token.clone())
    }

    pub fn gemini_key(&self) -> Option<Secret> {
        [&self.gemini_api_key, &self.google_api_key]
            .into_iter()
            .find_map(|k| Secret::new(k.as_str()))
    }

    /// `OPENAI_API_KEY`, if set.
    pub fn openai_key(&self) -> Option<Secret> {
        Secret::new(self.openai_api_key.as_str())
    }

    pub fn health_url(&self) -> Option<String> {
        (!self.health_url.is_empty()).then(|| self.health_url.clone())
    }

    pub fn incident_log(&self) -> Option<PathBuf> {
        (!self.incident_log.is_empty()).then(|| PathBuf::from(&self.incident_log))
    }

    pub fn budget_state(&self) -> Option<PathBuf> {
        if !self.budget_state.is_empty() {
            return Some(PathBuf::from(&self.budget_state));
        }
        self.incident_log()
            .map(|p| p.with_file_name("restart-budget.json"))
    }

    /// `REPLICA_PROBE_PORT`: `None` when empty (no probe of the replicas).
    pub fn replica_probe_port(&self) -> Result<Option<u16>, ConfigError> {
        let p = self.replica_probe_port.trim();
        if p.is_empty() || p == "off" {
            return Ok(None);
        }
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(Some)
            .ok_or_else(|| {
                bad(
                    "REPLICA_PROBE_PORT",
                    "must be a port number (1-65535), or empty to turn the probe off",
                )
            })
    }

    pub fn verify_timeout(&self) -> Duration {
        Duration::from_secs(self.verify_timeout_secs)
    }
}

/// `NOTIFY_URL`, from the environment only: a Slack hook URL is a credential of its own, so it
/// is neither a flag (visible in the process list) nor ever printed.
pub fn notify_url() -> Option<Secret> {
    std::env::var("NOTIFY_URL").ok().and_then(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut all = vec!["webhook-receiver"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).map_err(|e| e.to_string())?;
        cli.settings.validate().map_err(|e| e.to_string())?;
        Ok(cli.settings)
    }

    #[test]
    fn defaults_are_valid() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.services(), ["webapp"]);
        assert_eq!(s.listen_addr.port(), 5001);
        assert!(s.docker_events && !s.dry_run);
        assert_eq!(
            s.budget_state().unwrap(),
            PathBuf::from("restart-budget.json")
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert!(parse(&["--heal-services", "web app"])
            .unwrap_err()
            .contains("HEAL_SERVICES"));
        assert!(parse(&["--health-url", "not a url"])
            .unwrap_err()
            .contains("HEALTH_URL"));
        assert!(parse(&["--restart-budget", "0"])
            .unwrap_err()
            .contains("RESTART_BUDGET"));
        assert!(parse(&["--llm-provider", "gemini"])
            .unwrap_err()
            .contains("GEMINI_API_KEY"));
        assert!(parse(&["--dry-run", "maybe"]).is_err());
        assert!(parse(&["--dry-run", "yes"]).unwrap().dry_run);
    }
}
