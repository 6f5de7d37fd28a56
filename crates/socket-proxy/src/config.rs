//! Flags and environment. Compose passes the project (`${COMPOSE_PROJECT_NAME}`, which compose
//! sets to the real project name even under `-p`) and the healable services.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::scope::{Scope, ScopeError};

#[derive(Debug, Parser)]
#[command(
    name = "socket-proxy",
    version,
    about = "Docker API proxy for the healing agent: its calls only, on one compose project's healable replicas only"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 when the proxy answers GET /_ping with 200 (Docker reachable through it); for the
    /// Docker healthcheck, no shell needed.
    Healthcheck,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on (the compose network only the agent shares).
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:2375")]
    pub listen: SocketAddr,
    /// dockerd's Unix socket.
    #[arg(long, env = "UPSTREAM_SOCKET", default_value = "/var/run/docker.sock")]
    pub upstream_socket: PathBuf,
    /// The compose project whose replicas may be touched.
    #[arg(long, env = "HEAL_PROJECT", default_value = "")]
    pub project: String,
    /// Its healable services, comma-separated.
    #[arg(
        long,
        env = "HEAL_SERVICES",
        default_value = "webapp",
        value_delimiter = ','
    )]
    pub services: Vec<String>,
}

impl Config {
    pub fn scope(&self) -> Result<Scope, ScopeError> {
        Scope::new(&self.project, &self.services)
    }
}
