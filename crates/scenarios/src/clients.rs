//! HTTP clients for what the harness reads and pokes: the agent (`/healthz`, `/incidents`,
//! `/metrics`, `/reset`, `/webhook`), the notification sink, Prometheus and Alertmanager.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

#[derive(Clone)]
pub struct Agent {
    pub url: String,
    pub token: String,
    http: reqwest::Client,
}

impl Agent {
    pub fn new(url: &str, token: &str) -> Self {
        Agent {
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn healthz(&self) -> Result<Value> {
        let r = self
            .http
            .get(format!("{}/healthz", self.url))
            .timeout(Duration::from_secs(3))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "/healthz answered {}", r.status());
        Ok(r.json().await?)
    }

    /// Neither healing nor recycling right now (`healing: false`, `recycling: []`; an agent
    /// without those fields counts as idle). False when the agent does not answer.
    pub async fn idle(&self) -> bool {
        match self.healthz().await {
            Ok(h) => {
                !h["healing"].as_bool().unwrap_or(false)
                    && h["recycling"].as_array().is_none_or(|r| r.is_empty())
            }
            Err(_) => false,
        }
    }

    /// Every incident the agent serves (newest first, up to 1000).
    pub async fn incidents(&self) -> Result<Vec<Value>> {
        let r = self
            .http
            .get(format!("{}/incidents?limit=1000", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .context("GET /incidents")?;
        anyhow::ensure!(
            r.status().is_success(),
            "/incidents answered {}",
            r.status()
        );
        let v: Value = r.json().await.context("/incidents is not JSON")?;
        match v {
            Value::Array(a) => Ok(a),
            // Defensive: an agent that wraps the list.
            Value::Object(ref o) if o.get("incidents").is_some_and(Value::is_array) => {
                Ok(o["incidents"].as_array().cloned().unwrap_or_default())
            }
            other => anyhow::bail!("/incidents is not a list: {}", bounded(&other.to_string())),
        }
    }

    pub async fn metrics(&self) -> Result<String> {
        let r = self
            .http
            .get(format!("{}/metrics", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "/metrics answered {}", r.status());
        Ok(r.text().await?)
    }

    /// `POST /reset?replica=NAME`: the HTTP status (404 from an agent without the endpoint).
    pub async fn reset(&self, replica: &str) -> Result<u16> {
        let r = self
            .http
            .post(with_query(
                &format!("{}/reset", self.url),
                &[("replica", replica)],
            )?)
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok(r.status().as_u16())
    }

    /// POSTs a webhook with the token; the HTTP status.
    pub async fn post_webhook(&self, body: &Value) -> Result<u16> {
        let r = self
            .http
            .post(format!("{}/webhook", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        Ok(r.status().as_u16())
    }

    /// The agent's resident memory from its own `/metrics`, in bytes.
    pub async fn rss_bytes(&self) -> Option<f64> {
        metric_sum(
            &self.metrics().await.ok()?,
            "process_resident_memory_bytes",
            &[],
        )
    }
}

/// One alert of a webhook.
pub struct AlertSpec<'a> {
    pub name: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
    pub annotations: &'a [(&'a str, &'a str)],
}

/// A firing Alertmanager webhook (version 4) with these alerts.
pub fn webhook(alerts: &[AlertSpec]) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|a| {
            let mut labels = serde_json::Map::new();
            labels.insert("alertname".into(), json!(a.name));
            for (k, v) in a.labels {
                labels.insert((*k).into(), json!(v));
            }
            let annotations: serde_json::Map<String, Value> = a
                .annotations
                .iter()
                .map(|(k, v)| ((*k).to_string(), json!(v)))
                .collect();
            json!({
                "status": "firing", "labels": labels, "annotations": annotations,
                "startsAt": now, "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph", "fingerprint": format!("{:016x}", fnv(a.name)),
            })
        })
        .collect();
    let common = alerts
        .first()
        .map(|a| a["labels"].clone())
        .unwrap_or(json!({}));
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"scenario\"}", "truncatedAlerts": 0,
        "status": "firing", "receiver": "webhook-receiver", "groupLabels": {},
        "commonLabels": common, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    })
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Sum of a metric's samples whose labels contain every pair; `None` when no sample exists.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        if metric != name
            || !labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The notification sink of the stack.
#[derive(Clone)]
pub struct Sink {
    url: String,
    http: reqwest::Client,
}

impl Sink {
    pub fn new(url: &str) -> Self {
        Sink {
            url: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn notifications(&self) -> Result<Vec<Value>> {
        let r = self
            .http
            .get(format!("{}/notifications", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .context("GET notify-sink /notifications")?;
        Ok(r.json().await?)
    }
}

/// Prometheus and Alertmanager, to wait until no webapp alert is firing.
#[derive(Clone)]
pub struct Monitoring {
    prom: String,
    am: String,
    http: reqwest::Client,
}

impl Monitoring {
    pub fn new(prom: &str, am: &str) -> Self {
        Monitoring {
            prom: prom.trim_end_matches('/').to_string(),
            am: am.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .expect("http client"),
        }
    }

    /// The first sample of an instant query.
    pub async fn query(&self, expr: &str) -> Result<Option<f64>> {
        let v: Value = self
            .http
            .get(with_query(
                &format!("{}/api/v1/query", self.prom),
                &[("query", expr)],
            )?)
            .send()
            .await?
            .json()
            .await?;
        Ok(v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok()))
    }

    /// Active scrape targets of `job` whose last scrape succeeded. (Not `count(up == 1)`: after
    /// a Prometheus restart, series of targets that vanished while it was down carry no
    /// staleness marker and count for another five minutes.)
    pub async fn targets_up(&self, job: &str) -> Result<usize> {
        let v: Value = self
            .http
            .get(with_query(
                &format!("{}/api/v1/targets", self.prom),
                &[("state", "active")],
            )?)
            .send()
            .await?
            .json()
            .await?;
        Ok(v["data"]["activeTargets"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter(|t| t["labels"]["job"] == job && t["health"] == "up")
                    .count()
            })
            .unwrap_or(0))
    }

    /// Webapp alerts firing in Prometheus plus active ones in Alertmanager (0 = quiet). The
    /// agent's own alerts (`component: healing-agent`, e.g. HealingCircuitBreakerOpen, which
    /// names the service it gave up on) go to people, never to the agent: they are left out, or
    /// a case after one where the agent gave up could never start.
    pub async fn webapp_alerts(&self) -> Result<usize> {
        let firing = self
            .query("count(ALERTS{service=\"webapp\", alertstate=\"firing\", component!=\"healing-agent\"}) or vector(0)")
            .await?
            .unwrap_or(0.0) as usize;
        let am: Value = self
            .http
            .get(with_query(
                &format!("{}/api/v2/alerts", self.am),
                &[
                    ("active", "true"),
                    ("filter", "service=\"webapp\""),
                    ("filter", "component!=\"healing-agent\""),
                ],
            )?)
            .send()
            .await?
            .json()
            .await?;
        Ok(firing + am.as_array().map(Vec::len).unwrap_or(0))
    }
}

/// `url` with these query parameters, encoded.
fn with_query(url: &str, params: &[(&str, &str)]) -> Result<reqwest::Url> {
    reqwest::Url::parse_with_params(url, params).with_context(|| format!("bad URL {url}"))
}

/// At most 300 characters of `s`, for error messages.
pub fn bounded(s: &str) -> String {
    if s.chars().count() <= 300 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(300).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_match_labels_and_tell_absent_from_zero() {
        let text = "# HELP x\nhealing_restarts_total{service=\"webapp\",result=\"ok\"} 3\n\
                    healing_restarts_total{service=\"webapp\",result=\"denied\"} 2\n\
                    process_resident_memory_bytes 12345678\n";
        assert_eq!(
            metric_sum(text, "healing_restarts_total", &[("result", "ok")]),
            Some(3.0)
        );
        assert_eq!(metric_sum(text, "healing_restarts_total", &[]), Some(5.0));
        assert_eq!(
            metric_sum(text, "process_resident_memory_bytes", &[]),
            Some(12_345_678.0)
        );
        assert_eq!(metric_sum(text, "healing_nothing_total", &[]), None);
    }

    #[test]
    fn webhooks_are_alertmanager_v4() {
        let w = webhook(&[AlertSpec {
            name: "WebappReplicaDown",
            labels: &[("service", "webapp")],
            annotations: &[("summary", "one down")],
        }]);
        assert_eq!(w["version"], "4");
        assert_eq!(w["alerts"][0]["labels"]["alertname"], "WebappReplicaDown");
        assert_eq!(w["alerts"][0]["labels"]["service"], "webapp");
        assert_eq!(w["alerts"][0]["annotations"]["summary"], "one down");
        assert_eq!(w["alerts"][0]["status"], "firing");
    }
}
