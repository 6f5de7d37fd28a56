//! The agent's own HTTP checks: each running replica directly (a hung replica can look healthy to
//! Docker for a while), and the service as users reach it (`HEALTH_URL`, through the load
//! balancer). Behind a trait so that engine tests run without a network.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::incidents::ProbeRecord;
use crate::runtime::{ReplicaState, Status};
use crate::text::{bounded, error_chain};

/// Labels that override the probe per service: `healstack.probe.port` (`off` disables) and
/// `healstack.probe.path`.
pub const PORT_LABEL: &str = "healstack.probe.port";
pub const PATH_LABEL: &str = "healstack.probe.path";

#[async_trait]
pub trait Prober: Send + Sync {
    /// One check of a running replica; `None` when probing is off for it or it has no address.
    async fn replica(&self, state: &ReplicaState) -> Option<ProbeRecord>;
    /// One check of the service URL; `None` when no URL is configured.
    async fn service(&self) -> Option<ProbeRecord>;
}

#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Port of each replica to probe; `None` turns replica probing off.
    pub replica_port: Option<u16>,
    pub replica_path: String,
    pub timeout: Duration,
    /// `HEALTH_URL`.
    pub service_url: Option<String>,
}

pub struct HttpProber {
    http: reqwest::Client,
    config: ProbeConfig,
}

impl HttpProber {
    pub fn new(config: ProbeConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            // A probe must see the replica itself, never a proxy from the environment.
            .no_proxy()
            .build()
            .expect("http client builds");
        HttpProber { http, config }
    }

    async fn get(&self, url: String, timeout: Duration) -> ProbeRecord {
        let started = Instant::now();
        let r = self.http.get(&url).timeout(timeout).send().await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match r {
            Ok(resp) => ProbeRecord {
                ok: resp.status().is_success(),
                status: Some(resp.status().as_u16()),
                url: Some(url),
                latency_ms,
                error: None,
                timed_out: false,
            },
            Err(e) => ProbeRecord {
                ok: false,
                status: None,
                url: Some(url),
                latency_ms,
                timed_out: e.is_timeout(),
                error: Some(if e.is_timeout() {
                    format!("no answer within {} ms", timeout.as_millis())
                } else {
                    bounded(&error_chain(&e), 200)
                }),
            },
        }
    }
}

#[async_trait]
impl Prober for HttpProber {
    async fn replica(&self, state: &ReplicaState) -> Option<ProbeRecord> {
        if state.status != Status::Running {
            return None;
        }
        let labels = &state.container.labels;
        let port = match labels.get(PORT_LABEL).map(|p| p.trim()) {
            Some("off") | Some("0") => return None,
            Some(p) => p.parse().ok()?,
            None => self.config.replica_port?,
        };
        let path = labels
            .get(PATH_LABEL)
            .map(String::as_str)
            .unwrap_or(&self.config.replica_path);
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let ip = state.ip?;
        let host = match ip {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => format!("[{a}]"),
        };
        Some(
            self.get(format!("http://{host}:{port}{path}"), self.config.timeout)
                .await,
        )
    }

    async fn service(&self) -> Option<ProbeRecord> {
        let url = self.config.service_url.clone()?;
        // The load balancer may retry a dead replica before answering: give it more time.
        Some(
            self.get(url, self.config.timeout.max(Duration::from_secs(2)))
                .await,
        )
    }
}
