//! A demo web app that leaks memory on purpose, so that under load its container
//! hits its memory limit, is OOM-killed (exit 137) and the healing agent has work.
//!
//! - [`config`]: the command line and environment variables (clap), validated once at start.
//! - [`startup`]: binds the app and metrics listeners ([`Application`]), serves them
//!   until the shutdown future completes ([`run`]), and the SIGTERM/SIGINT future.
//! - [`serve`]: the HTTP/1.1 server loop and the drain after SIGTERM (refuse new connections,
//!   answer what was accepted, close idle keep-alive ones, bounded by `DRAIN_TIMEOUT`).
//! - [`app`]: the routers: `GET /` (leaks), `GET /health`, and `GET /metrics` on its own port.
//! - [`leak`]: the never-freed, fully written buffers behind `GET /`.
//! - [`metrics`]: the Prometheus registry (requests, latency, leaked bytes, cgroup
//!   memory limit, process collector).
//! - [`healthcheck`]: `webapp healthcheck`, a curl-free Docker HEALTHCHECK.
//! - [`telemetry`]: tracing subscriber, human or JSON.

pub mod app;
pub mod config;
pub mod healthcheck;
pub mod leak;
pub mod metrics;
pub mod serve;
pub mod startup;
pub mod telemetry;

pub use config::{Cli, Command, Config, ConfigError, LogFormat, Settings};
pub use startup::{run, shutdown_signal, Application, StartError};
