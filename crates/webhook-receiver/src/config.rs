//! Configuration: environment variables (`.env` honoured) with matching CLI flags, sane defaults,
//! and one validation pass at start that names the variable at fault.
//!
//! - [`parse`]: the range-checked value parsers (durations in humantime or the variable's unit).
//! - [`secrets`]: API keys and the webhook token, from the environment (or `*_FILE`) only.

pub mod parse;
pub mod secrets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand, ValueEnum};

pub use parse::{DurationParser, IntParser};
pub use secrets::Secrets;

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
    /// Print the bearer token the agent checks (the configured one, or the one it generated),
    /// e.g. `docker compose exec -T webhook-receiver /app token`.
    Token,
}

/// Who must show the bearer token on `POST /webhook`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookAuth {
    /// Alertmanager sends it (the stack's Alertmanager reads it from the shared file).
    Bearer,
    /// Nobody: for an Alertmanager of your own that sends no token. The other endpoints that
    /// reveal or change state still need it.
    None,
}

/// Every setting of the agent but the secrets, from flags and environment variables. The secrets
/// ([`Secrets`]) are environment-only and filled in by [`Secrets::from_env`].
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Address to serve the webhook, /healthz, /metrics and /incidents on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:5001")]
    pub listen_addr: SocketAddr,
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
    /// No longer used (1-1000): it was a number of restarts after which the agent gave up on a
    /// replica, which left a service under load down for good; a replica that served is now
    /// never given up on (docs/agent.md). Accepted so that existing settings still start.
    #[arg(long, env = "RESTART_BUDGET", default_value = "5", value_parser = IntParser::<u32>::new(1, 1000))]
    pub restart_budget: u32,
    /// How long a restart counts for the backoff of the next one (1s-30d; plain numbers are
    /// seconds).
    #[arg(long = "restart-window-secs", env = "RESTART_WINDOW_SECS", default_value = "600",
          value_name = "DURATION", value_parser = DurationParser::secs(SECOND, days(30)))]
    pub restart_window: Duration,
    /// Backoff before the 2nd restart of a streak (the 1st waits for nothing); doubles each time
    /// (0-1h; plain numbers are milliseconds).
    #[arg(long = "restart-backoff-ms", env = "RESTART_BACKOFF_MS", default_value = "1000",
          value_name = "DURATION", value_parser = DurationParser::millis(Duration::ZERO, HOUR))]
    pub restart_backoff: Duration,
    /// Longest backoff: low enough that a replica dying under load still serves most of the time
    /// (Docker's own grows to a minute); 0-1h, plain numbers are milliseconds.
    #[arg(long = "restart-backoff-max-ms", env = "RESTART_BACKOFF_MAX_MS", default_value = "2000",
          value_name = "DURATION", value_parser = DurationParser::millis(Duration::ZERO, HOUR))]
    pub restart_backoff_max: Duration,
    /// A replica that was running and healthy this long before it failed starts a new streak (no
    /// backoff), as Docker resets its own after 10 s; 0: never (0-1d; plain numbers are seconds).
    #[arg(long = "restart-stable-secs", env = "RESTART_STABLE_SECS", default_value = "10",
          value_name = "DURATION", value_parser = DurationParser::secs(Duration::ZERO, days(1)))]
    pub restart_stable: Duration,
    /// How long verification may wait for restarted replicas to serve (1s-1h; plain numbers are
    /// seconds).
    #[arg(long = "verify-timeout-secs", env = "VERIFY_TIMEOUT_SECS", default_value = "30",
          value_name = "DURATION", value_parser = DurationParser::secs(SECOND, HOUR))]
    pub verify_timeout: Duration,
    /// Pause before a run, so triggers arriving together become one run (0-1m; plain numbers are
    /// milliseconds).
    #[arg(long = "debounce-ms", env = "DEBOUNCE_MS", default_value = "100",
          value_name = "DURATION", value_parser = DurationParser::millis(Duration::ZERO, MINUTE))]
    pub debounce: Duration,
    /// On SIGTERM, how long in-flight healing runs may finish (0-10m, with a unit: 20s).
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "20s",
          value_name = "DURATION", value_parser = DurationParser::humantime(Duration::ZERO, 10 * MINUTE))]
    pub drain_timeout: Duration,
    /// JSON-lines incident log; empty keeps incidents in memory only.
    #[arg(long, env = "INCIDENT_LOG", default_value = "incidents.jsonl")]
    pub incident_log: String,
    /// Rotate the incident log when it would grow past this many bytes (4096 to 1 TiB).
    #[arg(long, env = "INCIDENT_LOG_MAX_BYTES", default_value = "10485760",
          value_parser = IntParser::<u64>::new(4096, 1 << 40))]
    pub incident_log_max_bytes: u64,
    /// Rotated incident logs kept (incidents.jsonl.1 is the newest); 0 keeps none (0-100).
    #[arg(long, env = "INCIDENT_LOG_KEEP", default_value = "3",
          value_parser = IntParser::<usize>::new(0, 100))]
    pub incident_log_keep: usize,
    /// Restart budget state; default: restart-budget.json next to the incident log.
    #[arg(long, env = "BUDGET_STATE", default_value = "")]
    pub budget_state: String,
    /// `bearer`: POST /webhook needs the token; `none`: it takes alerts from anyone (every other
    /// endpoint that reveals or changes state still needs the token).
    #[arg(long, env = "WEBHOOK_AUTH", value_enum, default_value = "bearer")]
    pub webhook_auth: WebhookAuth,
    /// Accept a well-known default WEBHOOK_TOKEN such as `change-me` (refused otherwise).
    #[arg(long, env = "ALLOW_WEAK_TOKEN", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub allow_weak_token: bool,
    /// Where a generated token is kept (mode 0600) when WEBHOOK_TOKEN is unset; default:
    /// webhook-token next to the incident log.
    #[arg(long, env = "TOKEN_STATE", default_value = "")]
    pub token_state: String,
    /// A copy of the token in use for Alertmanager's `credentials_file` (mode 0444, written at
    /// start); empty: none.
    #[arg(long, env = "WEBHOOK_TOKEN_SHARE", default_value = "")]
    pub token_share: String,
    /// Largest webhook body accepted, in bytes (1 KiB to 64 MiB).
    #[arg(long, env = "WEBHOOK_MAX_BYTES", default_value = "1048576",
          value_parser = IntParser::<usize>::new(1024, 64 << 20))]
    pub webhook_max_bytes: usize,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// auto: Gemini if its key is set, else OpenAI-compatible if OPENAI_MODEL is set, else the runbook.
    #[arg(long, env = "LLM_PROVIDER", value_enum, default_value = "auto")]
    pub llm_provider: LlmProviderChoice,
    /// The Gemini model (a current one: older models are retired and answer 404).
    #[arg(long, env = "GEMINI_MODEL", default_value = crate::llm::config::DEFAULT_GEMINI_MODEL)]
    pub gemini_model: String,
    /// How much a Gemini 3 model thinks before each turn: minimal, low, medium, high, or default
    /// (the model's own). Low keeps a healing turn fast; not sent to Gemini 2.x models.
    #[arg(long, env = "GEMINI_THINKING_LEVEL", default_value = "low",
          value_parser = |s: &str| s.parse::<crate::llm::gemini::ThinkingLevel>())]
    pub gemini_thinking_level: crate::llm::gemini::ThinkingLevel,
    #[arg(
        long,
        env = "GEMINI_BASE_URL",
        default_value = "https://generativelanguage.googleapis.com"
    )]
    pub gemini_base_url: String,
    /// e.g. https://api.openai.com/v1 or http://ollama:11434/v1
    #[arg(long, env = "OPENAI_BASE_URL", default_value = "")]
    pub openai_base_url: String,
    /// Required with the OpenAI-compatible provider (e.g. gpt-4o-mini, llama3.1).
    #[arg(long, env = "OPENAI_MODEL", default_value = "")]
    pub openai_model: String,
    /// Model turns per incident (1-100).
    #[arg(long, env = "LLM_MAX_TURNS", default_value = "8", value_parser = IntParser::<u32>::new(1, 100))]
    pub llm_max_turns: u32,
    /// Wall clock of one incident's model run (1s-1h; plain numbers are seconds).
    #[arg(long = "llm-timeout-secs", env = "LLM_TIMEOUT_SECS", default_value = "60",
          value_name = "DURATION", value_parser = DurationParser::secs(SECOND, HOUR))]
    pub llm_timeout: Duration,

    /// Periodic look at every healable service from live state (0: off; else 1s-1d).
    #[arg(long, env = "RECONCILE_INTERVAL", default_value = "10s",
          value_name = "DURATION", value_parser = DurationParser::humantime(Duration::ZERO, days(1)))]
    pub reconcile_interval: Duration,
    /// Port of each replica the agent probes itself (`http://<replica ip>:PORT<PATH>`); empty: no probe.
    #[arg(long, env = "REPLICA_PROBE_PORT", default_value = "8000")]
    pub replica_probe_port: String,
    #[arg(long, env = "REPLICA_PROBE_PATH", default_value = "/health")]
    pub replica_probe_path: String,
    /// Two probes in a row without an answer within this time: the replica is hung (50ms-30s).
    #[arg(long, env = "REPLICA_PROBE_TIMEOUT", default_value = "1s",
          value_name = "DURATION", value_parser = DurationParser::humantime(Duration::from_millis(50), 30 * SECOND))]
    pub replica_probe_timeout: Duration,
    /// The Nth heal of the same replica for the same kind of failure within ESCALATE_WINDOW
    /// escalates (0: never; at most 1000).
    #[arg(long, env = "ESCALATE_AFTER", default_value = "3", value_parser = IntParser::<u32>::new(0, 1000))]
    pub escalate_after: u32,
    /// (1s-7d)
    #[arg(long, env = "ESCALATE_WINDOW", default_value = "10m",
          value_name = "DURATION", value_parser = DurationParser::humantime(SECOND, days(7)))]
    pub escalate_window: Duration,
    /// Starts of a replica that crashes on start before the agent gives up on it and escalates (1-100).
    #[arg(long, env = "CRASH_ON_START_TRIES", default_value = "2", value_parser = IntParser::<u32>::new(1, 100))]
    pub crash_on_start_tries: u32,
    /// Recycle a replica of every healable service before its memory reaches its limit (on/off);
    /// off, only services labelled `healstack.recycle=memory` are.
    #[arg(long, env = "PREVENTIVE_RECYCLE", default_value = "off", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub preventive_recycle: bool,
    /// The stop timeout of a recycle: SIGTERM, then the kill after this long (1s-1m: the socket
    /// proxy allows no longer). Keep it above the replicas' own drain time.
    #[arg(long, env = "RECYCLE_STOP_TIMEOUT", default_value = "8s",
          value_name = "DURATION", value_parser = DurationParser::humantime(SECOND, MINUTE))]
    pub recycle_stop_timeout: Duration,
    /// How often the agent reads the memory of replicas it may recycle (100ms-1m).
    #[arg(long, env = "RECYCLE_INTERVAL", default_value = "1s",
          value_name = "DURATION", value_parser = DurationParser::humantime(Duration::from_millis(100), MINUTE))]
    pub recycle_interval: Duration,
    /// `json` or `slack` (incoming-webhook format) for NOTIFY_URL (read from the environment only).
    #[arg(long, env = "NOTIFY_FORMAT", value_enum, default_value = "json")]
    pub notify_format: NotifyFormatChoice,
    /// (100ms-1m)
    #[arg(long, env = "NOTIFY_TIMEOUT", default_value = "5s",
          value_name = "DURATION", value_parser = DurationParser::humantime(Duration::from_millis(100), MINUTE))]
    pub notify_timeout: Duration,

    /// `WEBHOOK_TOKEN`, `GEMINI_API_KEY`/`GOOGLE_API_KEY`, `OPENAI_API_KEY` (or their `*_FILE`):
    /// from the environment only, never flags.
    #[arg(skip)]
    pub secrets: Secrets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NotifyFormatChoice {
    Json,
    Slack,
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

pub(crate) fn bad(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

impl Settings {
    /// Checks everything that the value parsers cannot check alone, once, at start.
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
        if let Some(default) = self
            .token()
            .and_then(|t| crate::token::well_known(t.expose()))
        {
            if !self.allow_weak_token {
                return Err(bad(
                    "WEBHOOK_TOKEN",
                    crate::token::TokenError::WellKnown(default.to_string()).to_string(),
                ));
            }
        }
        if !self.health_url.is_empty() {
            let url = reqwest::Url::parse(&self.health_url)
                .map_err(|e| bad("HEALTH_URL", e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("HEALTH_URL", "must be an http(s) URL"));
            }
        }
        if !self.reconcile_interval.is_zero() && self.reconcile_interval < SECOND {
            return Err(bad("RECONCILE_INTERVAL", "must be 0 (off) or at least 1s"));
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
                let parsed = reqwest::Url::parse(url).map_err(|e| bad(var, e.to_string()))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(bad(var, "must be an http(s) URL"));
                }
            }
        }
        match self.llm_provider {
            LlmProviderChoice::Gemini if self.gemini_key().is_none() => {
                return Err(bad(
                    "GEMINI_API_KEY",
                    "LLM_PROVIDER=gemini needs GEMINI_API_KEY (or GOOGLE_API_KEY, or a *_FILE)",
                ));
            }
            LlmProviderChoice::Openai => {
                if self.openai_base_url.is_empty() && self.openai_key().is_none() {
                    return Err(bad(
                        "OPENAI_BASE_URL",
                        "LLM_PROVIDER=openai needs OPENAI_API_KEY or OPENAI_BASE_URL",
                    ));
                }
                if self.openai_model.trim().is_empty() {
                    return Err(bad(
                        "OPENAI_MODEL",
                        "LLM_PROVIDER=openai needs OPENAI_MODEL (the model your server serves)",
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Settings that work but are probably not what the operator meant, for the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.webhook_auth == WebhookAuth::None {
            warnings.push(
                "WEBHOOK_AUTH=none: POST /webhook accepts anyone's alerts, and this agent can \
                 restart containers. Let Alertmanager send the token instead (http_config.authorization)."
                    .to_string(),
            );
        }
        if self
            .token()
            .is_some_and(|t| crate::token::well_known(t.expose()).is_some())
        {
            warnings.push(
                "WEBHOOK_TOKEN is a well-known default (accepted because ALLOW_WEAK_TOKEN=true)"
                    .to_string(),
            );
        }
        if self.restart_budget != 5 {
            warnings.push(
                "RESTART_BUDGET no longer limits restarts: a replica that served is restarted every \
                 time (backoff up to RESTART_BACKOFF_MAX_MS) and a recurrence is escalated; only a \
                 replica that never serves is given up on (CRASH_ON_START_TRIES). Remove the setting."
                    .to_string(),
            );
        }
        let openai_configured = self.openai_key().is_some() || !self.openai_base_url.is_empty();
        if self.llm_provider == LlmProviderChoice::Auto
            && self.gemini_key().is_none()
            && openai_configured
            && self.openai_model.trim().is_empty()
        {
            warnings.push(
                "OPENAI_API_KEY or OPENAI_BASE_URL is set but OPENAI_MODEL is not: LLM_PROVIDER=auto \
                 uses the built-in runbook (set OPENAI_MODEL to use the OpenAI-compatible provider)"
                    .to_string(),
            );
        }
        warnings
    }

    pub fn services(&self) -> Vec<String> {
        self.heal_services
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn token(&self) -> Option<Secret> {
        self.secrets.webhook_token.clone()
    }

    pub fn gemini_key(&self) -> Option<Secret> {
        self.secrets.gemini_api_key.clone()
    }

    /// `OPENAI_API_KEY`, if set.
    pub fn openai_key(&self) -> Option<Secret> {
        self.secrets.openai_api_key.clone()
    }

    pub fn health_url(&self) -> Option<String> {
        (!self.health_url.is_empty()).then(|| self.health_url.clone())
    }

    pub fn incident_log(&self) -> Option<PathBuf> {
        (!self.incident_log.is_empty()).then(|| PathBuf::from(&self.incident_log))
    }

    /// Where a generated webhook token is kept.
    pub fn token_state(&self) -> Option<PathBuf> {
        if !self.token_state.is_empty() {
            return Some(PathBuf::from(&self.token_state));
        }
        self.incident_log()
            .map(|p| p.with_file_name("webhook-token"))
    }

    pub fn token_share(&self) -> Option<PathBuf> {
        (!self.token_share.is_empty()).then(|| PathBuf::from(&self.token_share))
    }

    pub fn budget_state(&self) -> Option<PathBuf> {
        if !self.budget_state.is_empty() {
            return Some(PathBuf::from(&self.budget_state));
        }
        self.incident_log()
            .map(|p| p.with_file_name("restart-budget.json"))
    }

    /// The stops the agent saw (`stops.json`, next to the restart budgets).
    pub fn stops_state(&self) -> Option<PathBuf> {
        self.budget_state().map(|p| p.with_file_name("stops.json"))
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
}

/// `NOTIFY_URL`, from the environment only: a Slack hook URL is a credential of its own, so it
/// is neither a flag (visible in the process list) nor ever printed.
pub fn notify_url() -> Option<Secret> {
    std::env::var("NOTIFY_URL").ok().and_then(Secret::new)
}

#[cfg(test)]
mod tests;
