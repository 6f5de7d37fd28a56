//! Configuration from environment variables, validated once at start.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bytes leaked per `GET /` unless `LEAK_BYTES_PER_REQUEST` says otherwise (1 MiB).
pub const DEFAULT_LEAK_BYTES_PER_REQUEST: usize = 1024 * 1024;

/// Everything the app needs to start. Build it with [`Config::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `BIND_ADDR`, default `0.0.0.0`; both listeners bind to it.
    pub bind_addr: IpAddr,
    /// `PORT`, default 8000: the app listener. 0 picks a free port.
    pub port: u16,
    /// `METRICS_PORT`, default 8080: the Prometheus listener. 0 picks a free port.
    pub metrics_port: u16,
    /// `LEAK_BYTES_PER_REQUEST`, default 1 MiB; 0 turns the leak off.
    pub leak_bytes_per_request: usize,
    /// `LOG_FORMAT`: `human` (default) or `json`.
    pub log_format: LogFormat,
    /// Shown on the page so you can tell replicas apart: `HOSTNAME`, else
    /// `/etc/hostname` (Docker sets both to the container id), else "unknown".
    pub instance: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid {var}={value:?}: expected {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{var} is not valid UTF-8")]
    NotUnicode { var: &'static str },
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
            log_format: LogFormat::Human,
            instance: "unknown".to_owned(),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = Self::from_lookup(std::env::var)?;
        if config.instance == "unknown" {
            if let Ok(name) = std::fs::read_to_string("/etc/hostname") {
                let name = name.trim();
                if !name.is_empty() {
                    config.instance = name.to_owned();
                }
            }
        }
        Ok(config)
    }

    /// Builds a config from any variable source, so tests need not touch the
    /// process environment (shared by every test thread).
    pub fn from_lookup<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&'static str) -> Result<String, std::env::VarError>,
    {
        let get = |var: &'static str| match lookup(var) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::NotUnicode { var }),
        };
        let defaults = Self::default();
        let bind_addr = parse_or(
            "BIND_ADDR",
            get("BIND_ADDR")?,
            "an IP address such as 0.0.0.0 or ::",
            defaults.bind_addr,
        )?;
        let port = parse_or("PORT", get("PORT")?, PORT_EXPECTED, defaults.port)?;
        let metrics_port = parse_or(
            "METRICS_PORT",
            get("METRICS_PORT")?,
            PORT_EXPECTED,
            defaults.metrics_port,
        )?;
        let leak_bytes_per_request = parse_or(
            "LEAK_BYTES_PER_REQUEST",
            get("LEAK_BYTES_PER_REQUEST")?,
            "a whole number of bytes, 0 or more",
            defaults.leak_bytes_per_request,
        )?;
        let log_format = match get("LOG_FORMAT")? {
            None => LogFormat::Human,
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "" | "human" | "text" | "pretty" => LogFormat::Human,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "LOG_FORMAT",
                        value,
                        expected: "json or human",
                    })
                }
            },
        };
        let instance = get("HOSTNAME")?
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or(defaults.instance);

        if port == metrics_port && port != 0 {
            return Err(ConfigError::SamePort { port });
        }

        Ok(Self {
            bind_addr,
            port,
            metrics_port,
            leak_bytes_per_request,
            log_format,
            instance,
        })
    }

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

const PORT_EXPECTED: &str = "a port number 0-65535";

fn parse_or<T: std::str::FromStr>(
    var: &'static str,
    value: Option<String>,
    expected: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|_| ConfigError::Invalid {
            var,
            value,
            expected,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<_, _> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Config::from_lookup(|k| vars.get(k).cloned().ok_or(std::env::VarError::NotPresent))
    }

    #[test]
    fn defaults_run() {
        assert_eq!(config(&[]).unwrap(), Config::default());
    }

    #[test]
    fn reads_every_variable() {
        let c = config(&[
            ("BIND_ADDR", "127.0.0.1"),
            ("PORT", "9000"),
            ("METRICS_PORT", "9001"),
            ("LEAK_BYTES_PER_REQUEST", "0"),
            ("LOG_FORMAT", "JSON"),
            ("HOSTNAME", "web-2"),
        ])
        .unwrap();
        assert_eq!(c.app_addr(), "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.metrics_addr(), "127.0.0.1:9001".parse().unwrap());
        assert_eq!(c.leak_bytes_per_request, 0);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.instance, "web-2");
    }

    #[test]
    fn errors_name_the_variable_and_the_value() {
        for (var, bad) in [
            ("PORT", "abc"),
            ("PORT", "70000"),
            ("METRICS_PORT", "-1"),
            ("LEAK_BYTES_PER_REQUEST", "-1"),
            ("LEAK_BYTES_PER_REQUEST", "1MB"),
            ("BIND_ADDR", "localhost"),
            ("LOG_FORMAT", "xml"),
        ] {
            let err = config(&[(var, bad)]).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(var), "{message:?} should name {var}");
            assert!(message.contains(bad), "{message:?} should quote {bad}");
        }
    }

    #[test]
    fn ports_must_differ_unless_ephemeral() {
        let err = config(&[("PORT", "8080")]).unwrap_err();
        assert_eq!(err, ConfigError::SamePort { port: 8080 });
        assert!(config(&[("PORT", "0"), ("METRICS_PORT", "0")]).is_ok());
    }

    #[test]
    fn healthcheck_goes_to_loopback_when_bound_everywhere() {
        let c = config(&[("PORT", "9000")]).unwrap();
        assert_eq!(c.healthcheck_addr(), "127.0.0.1:9000".parse().unwrap());
        let c = config(&[("BIND_ADDR", "::"), ("PORT", "9000")]).unwrap();
        assert_eq!(c.healthcheck_addr(), "[::1]:9000".parse().unwrap());
        let c = config(&[("BIND_ADDR", "10.0.0.5"), ("PORT", "9000")]).unwrap();
        assert_eq!(c.healthcheck_addr(), "10.0.0.5:9000".parse().unwrap());
    }
}
