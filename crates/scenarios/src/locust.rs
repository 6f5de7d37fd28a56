//! The stack's own Locust, driven through its web UI's API as a user (and scripts/e2e-test)
//! starts a swarm: so the load goes through nginx and Prometheus scrapes what users see.
//! Requests are counted from Locust's `/metrics` (locust/locustfile.py: every request by
//! status), whose counters live as long as the Locust process: a load is the difference of two
//! readings.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

#[derive(Clone)]
pub struct Locust {
    url: String,
    http: reqwest::Client,
}

/// Requests by status (`200`, `502`, `none` when no answer came), summed over names.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts(pub BTreeMap<String, f64>);

impl Counts {
    /// Parses `locust_requests_total{...,status="S",result="R"} N` lines.
    pub fn parse(text: &str) -> Counts {
        let mut out = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| l.starts_with("locust_requests_total{"))
        {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(n) = value.parse::<f64>() else {
                continue;
            };
            let status = series
                .split_once("status=\"")
                .and_then(|(_, r)| r.split_once('"'))
                .map(|(s, _)| s.to_string())
                .unwrap_or_else(|| "?".into());
            *out.entry(status).or_insert(0.0) += n;
        }
        Counts(out)
    }

    /// What was counted between `before` and `self`.
    pub fn since(&self, before: &Counts) -> Counts {
        Counts(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0.0)))
                .filter(|(_, v)| *v > 0.0)
                .collect(),
        )
    }

    pub fn total(&self) -> f64 {
        self.0.values().sum()
    }

    /// Requests answered 2xx.
    pub fn served(&self) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with('2'))
            .map(|(_, v)| v)
            .sum()
    }
}

impl Locust {
    pub fn new(url: &str) -> Self {
        Locust {
            url: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        }
    }

    /// `POST /swarm`: `users` users at `spawn_rate`/s against nginx, for `secs` seconds.
    pub async fn swarm(&self, users: u32, spawn_rate: u32, secs: u64) -> Result<()> {
        // A form, as the UI posts it (url-encoded by reqwest's Url, without its `form` feature).
        let form = reqwest::Url::parse_with_params(
            "http://form.invalid/",
            &[
                ("user_count", users.to_string()),
                ("spawn_rate", spawn_rate.to_string()),
                ("host", "http://nginx".to_string()),
                ("run_time", format!("{secs}s")),
            ],
        )?;
        let r: Value = self
            .http
            .post(format!("{}/swarm", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.query().unwrap_or_default().to_string())
            .send()
            .await
            .context("POST /swarm")?
            .json()
            .await
            .context("/swarm answer")?;
        if r["success"] != true {
            bail!("Locust refused the swarm: {r}");
        }
        Ok(())
    }

    /// `GET /stop`.
    pub async fn stop(&self) -> Result<()> {
        self.http
            .get(format!("{}/stop", self.url))
            .send()
            .await
            .context("GET /stop")?;
        Ok(())
    }

    /// The runner's state (`ready`, `spawning`, `running`, `stopped`, ...).
    pub async fn state(&self) -> Result<String> {
        Ok(self.stats().await?["state"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// `GET /stats/requests`: Locust's own statistics of the current (or last) swarm.
    pub async fn stats(&self) -> Result<Value> {
        self.http
            .get(format!("{}/stats/requests", self.url))
            .send()
            .await
            .context("GET /stats/requests")?
            .json()
            .await
            .context("/stats/requests answer")
    }

    pub async fn counts(&self) -> Result<Counts> {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .context("GET Locust /metrics")?
            .text()
            .await?;
        Ok(Counts::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_their_difference() {
        let before = Counts::parse(
            "# TYPE locust_requests_total counter\n\
             locust_requests_total{method=\"GET\",name=\"/\",status=\"200\",result=\"ok\"} 100\n\
             locust_requests_total{method=\"GET\",name=\"/health\",status=\"200\",result=\"ok\"} 10\n",
        );
        let after = Counts::parse(
            "locust_requests_total{method=\"GET\",name=\"/\",status=\"200\",result=\"ok\"} 160\n\
             locust_requests_total{method=\"GET\",name=\"/health\",status=\"200\",result=\"ok\"} 14\n\
             locust_requests_total{method=\"GET\",name=\"/\",status=\"502\",result=\"failed\"} 20\n\
             locust_requests_total{method=\"GET\",name=\"/\",status=\"none\",result=\"failed\"} 6\n\
             locust_users 20\n",
        );
        let d = after.since(&before);
        assert_eq!(d.total(), 90.0);
        assert_eq!(d.served(), 64.0);
        assert_eq!(d.0.get("502"), Some(&20.0));
        assert_eq!(d.0.get("none"), Some(&6.0));
    }
}
