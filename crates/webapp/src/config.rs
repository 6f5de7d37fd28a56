//! Configuration: environment variables with matching flags (clap, like the agent's), sane
//! defaults, validated once at start. `webapp --help` lists them all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Bytes leaked per `GET /` unless `LEAK_BYTES_PER_REQUEST` says otherwise (1 MiB).
pub const DEFAULT_LEAK_BYTES_PER_REQUEST: usize = 1024 * 1024;

/// How long requests in flight at SIGTERM may take to finish unless `DRAIN_TIMEOUT` says otherwise.
/// Requests here take milliseconds; the bound is for a client that never finishes its request.
/// Keep it under the container's stop timeout (compose: `stop_grace_period`, 10 s).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The command line: an optional subcommand and the settings.
#[derive(Debug, Parser)]
#[command(
    name = "webapp",
    version,
    about = "Demo web app that leaks memory on every GET /, so it gets OOM-killed under load",
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve the app and its metrics (the default).
    Serve,
    /// Exit 0 when the app on PORT answers GET /health with 200 (the Docker healthcheck of a
    /// FROM-scratch image: no shell, no curl).
    Healthcheck,
}

/// What the environment (or the flags) say, before validation.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Address both listeners bind to.
    #[arg(long, env = "BIND_ADDR", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind_addr: IpAddr,
    /// The app listener; 0 picks a free port.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,
    /// The Prometheus /metrics listener; 0 picks a free port.
    #[arg(long, env = "METRICS_PORT", default_value_t = 8080)]
    pub metrics_port: u16,
    /// Bytes leaked (allocated, written, never freed) per GET /; 0 turns the leak off.
    #[arg(long, env = "LEAK_BYTES_PER_REQUEST", default_value_t = DEFAULT_LEAK_BYTES_PER_REQUEST)]
    pub leak_bytes_per_request: usize,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (tracing's EnvFilter syntax); empty means `info`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
    /// Shown on the page and in `X-Served-By`, so you can tell replicas apart; empty: the
    /// container's hostname (Docker sets it to the container id).
    #[arg(long, env = "HOSTNAME", default_value = "")]
    pub instance: String,
    /// After SIGTERM, how long requests in flight may take to finish before the rest are cut
    /// (`500ms`, `5s`, ...); new connections are refused at once. Keep it under the stop timeout.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Test knob: ignore SIGTERM, as a replica that will not drain (Docker's stop timeout then
    /// kills it). SIGINT still stops it.
    #[arg(long, env = "IGNORE_SIGTERM")]
    pub ignore_sigterm: bool,
    /// Test knob: every request but `/health` waits this long before it is answered, as a slower
    /// real app's would, so that requests are in flight when a stop comes (`0s`: at once).
    #[arg(long, env = "RESPONSE_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub response_delay: Duration,
}

/// Everything the app needs to start, validated. Build it with [`Settings::into_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bind_addr: IpAddr,
    pub port: u16,
    pub metrics_port: u16,
    pub leak_bytes_per_request: usize,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub instance: String,
    pub drain_timeout: Duration,
    pub ignore_sigterm: bool,
    pub response_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    #[value(alias = "human", alias = "pretty")]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("PORT and METRICS_PORT are both {port}: give the metrics listener its own port")]
    SamePort { port: u16 },
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 8000,
            metrics_port: 8080,
            leak_bytes_per_request: DEFAULT_LEAK_BYTES_PER_REQUEST,
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
            instance: "unknown".to_owned(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            ignore_sigterm: false,
            response_delay: Duration::ZERO,
        }
    }
}

impl Settings {
    /// Checks what clap's types do not, and fills in the instance name from the hostname file
    /// when `HOSTNAME` is not set.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        self.into_config_with_hostname(|| std::fs::read_to_string("/etc/hostname").ok())
    }

    fn into_config_with_hostname(
        self,
        hostname_file: impl FnOnce() -> Option<String>,
    ) -> Result<Config, ConfigError> {
        if self.port == self.metrics_port && self.port != 0 {
            return Err(ConfigError::SamePort { port: self.port });
        }
        let instance = Some(self.instance.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| hostname_file().map(|h| h.trim().to_owned()))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        let log_filter = match self.log_filter.trim() {
            "" => "info".to_owned(),
            filter => filter.to_owned(),
        };
        Ok(Config {
            bind_addr: self.bind_addr,
            port: self.port,
            metrics_port: self.metrics_port,
            leak_bytes_per_request: self.leak_bytes_per_request,
            log_format: self.log_format,
            log_filter,
            instance,
            drain_timeout: self.drain_timeout,
            ignore_sigterm: self.ignore_sigterm,
            response_delay: self.response_delay,
        })
    }
}

impl Config {
    pub fn app_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind_addr, self.port)
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind_addr, self.metrics_port)
    }

    /// Where `webapp healthcheck` knocks: loopback when bound to every interface,
    /// otherwise the one address the app listens on.
    pub fn healthcheck_addr(&self) -> SocketAddr {
        let ip = match self.bind_addr {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags only (they win over the environment), so the tests do not depend on the
    /// variables of whoever runs them.
    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut argv = vec!["webapp"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
    }

    fn config(args: &[&str]) -> Config {
        parse(args)
            .unwrap()
            .settings
            .into_config_with_hostname(|| None)
            .unwrap()
    }

    /// The defaults clap declares are the ones `Config::default()` documents.
    #[test]
    fn clap_defaults_match_config_default() {
        let cmd = <Cli as clap::CommandFactory>::command();
        let default_of = |id: &str| {
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_default_values()[0].to_string_lossy().into_owned()
        };
        let d = Config::default();
        assert_eq!(default_of("bind_addr"), d.bind_addr.to_string());
        assert_eq!(default_of("port"), d.port.to_string());
        assert_eq!(default_of("metrics_port"), d.metrics_port.to_string());
        assert_eq!(
            default_of("leak_bytes_per_request"),
            d.leak_bytes_per_request.to_string()
        );
        assert_eq!(default_of("log_format"), "text");
        assert_eq!(default_of("log_filter"), d.log_filter);
        assert_eq!(
            humantime::parse_duration(&default_of("drain_timeout")).unwrap(),
            d.drain_timeout
        );
        assert!(!config(&[]).ignore_sigterm);
        assert_eq!(
            humantime::parse_duration(&default_of("response_delay")).unwrap(),
            d.response_delay
        );
    }

    #[test]
    fn reads_every_setting() {
        let c = config(&[
            "--bind-addr=127.0.0.1",
            "--port=9000",
            "--metrics-port=9001",
            "--leak-bytes-per-request=0",
            "--log-format=json",
            "--log-filter=debug",
            "--instance=web-2",
            "--drain-timeout=750ms",
            "--ignore-sigterm",
            "--response-delay=20ms",
        ]);
        assert_eq!(c.app_addr(), "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.metrics_addr(), "127.0.0.1:9001".parse().unwrap());
        assert_eq!(c.leak_bytes_per_request, 0);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_filter, "debug");
        assert_eq!(c.instance, "web-2");
        assert_eq!(c.drain_timeout, Duration::from_millis(750));
        assert!(c.ignore_sigterm);
        assert_eq!(c.response_delay, Duration::from_millis(20));
    }

    #[test]
    fn old_log_format_names_still_work() {
        for name in ["human", "pretty", "text"] {
            assert_eq!(config(&["--log-format", name]).log_format, LogFormat::Text);
        }
    }

    #[test]
    fn bad_values_are_refused_naming_the_setting_and_the_value() {
        for (flag, bad) in [
            ("--port", "abc"),
            ("--port", "70000"),
            ("--metrics-port", "-1"),
            ("--leak-bytes-per-request", "1MB"),
            ("--bind-addr", "localhost"),
            ("--log-format", "xml"),
            ("--drain-timeout", "5parsecs"),
        ] {
            let message = parse(&[&format!("{flag}={bad}")]).unwrap_err().to_string();
            assert!(message.contains(flag), "{message:?} should name {flag}");
            assert!(message.contains(bad), "{message:?} should quote {bad}");
        }
    }

    #[test]
    fn ports_must_differ_unless_ephemeral() {
        let settings = parse(&["--port=8080"]).unwrap().settings;
        assert_eq!(
            settings.into_config_with_hostname(|| None).unwrap_err(),
            ConfigError::SamePort { port: 8080 }
        );
        config(&["--port=0", "--metrics-port=0"]);
    }

    #[test]
    fn instance_falls_back_to_the_hostname_file_then_unknown() {
        let settings = parse(&["--instance="]).unwrap().settings;
        let c = settings
            .clone()
            .into_config_with_hostname(|| Some("abc123\n".into()))
            .unwrap();
        assert_eq!(c.instance, "abc123");
        assert_eq!(
            settings
                .into_config_with_hostname(|| None)
                .unwrap()
                .instance,
            "unknown"
        );
    }

    #[test]
    fn an_empty_log_filter_means_info() {
        assert_eq!(config(&["--log-filter="]).log_filter, "info");
    }

    #[test]
    fn healthcheck_goes_to_loopback_when_bound_everywhere() {
        let c = config(&["--port=9000"]);
        assert_eq!(c.healthcheck_addr(), "127.0.0.1:9000".parse().unwrap());
        let c = config(&["--bind-addr=::", "--port=9000"]);
        assert_eq!(c.healthcheck_addr(), "[::1]:9000".parse().unwrap());
        let c = config(&["--bind-addr=10.0.0.5", "--port=9000"]);
        assert_eq!(c.healthcheck_addr(), "10.0.0.5:9000".parse().unwrap());
    }

    #[test]
    fn subcommands() {
        assert_eq!(parse(&[]).unwrap().command, None);
        assert_eq!(parse(&["serve"]).unwrap().command, Some(Command::Serve));
        assert_eq!(
            parse(&["healthcheck"]).unwrap().command,
            Some(Command::Healthcheck)
        );
    }
}
