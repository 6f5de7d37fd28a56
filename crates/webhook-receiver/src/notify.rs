//! Notifications to a human: one POST per incident worth telling (healed, failed, gave up,
//! escalated, notified), to `NOTIFY_URL`, as generic JSON or Slack's incoming-webhook format.
//!
//! Never in the way of healing: the engine hands the notification to a bounded queue and moves
//! on; one worker, supervised (a panic is counted and the worker started again on the same
//! queue), delivers through a [`Deliver`] (HTTP, with a timeout per attempt and a few retries).
//! The URL is a secret (a Slack hook URL is its own credential) and is never logged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};

use crate::incidents::{Incident, Outcome};
use crate::metrics::Metrics;
use crate::secret::Secret;

/// Notifications waiting for delivery; past this they are dropped (and counted).
const QUEUE: usize = 256;
const ATTEMPTS: u32 = 3;
/// The longest `Retry-After` honoured before the attempt counts as failed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    Json,
    Slack,
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub url: Secret,
    pub format: NotifyFormat,
    pub timeout: Duration,
}

/// Where notifications go: one body at a time, retried as the implementation sees fit.
#[async_trait]
pub trait Deliver: Send + Sync + 'static {
    /// `Err` says what failed, never where (the URL is a secret).
    async fn deliver(&self, body: &Value) -> Result<(), String>;
}

/// POSTs each body to `NOTIFY_URL`.
pub struct HttpDeliver {
    http: reqwest::Client,
    config: NotifyConfig,
}

impl HttpDeliver {
    pub fn new(config: NotifyConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .expect("http client builds");
        HttpDeliver { http, config }
    }
}

#[async_trait]
impl Deliver for HttpDeliver {
    async fn deliver(&self, body: &Value) -> Result<(), String> {
        post(&self.http, &self.config, body).await
    }
}

/// The event a notification is about, if the incident is worth one. A failed run is retried
/// (requeued), not yet a result: people hear when it heals, or when the agent gives up.
pub fn event_of(incident: &Incident) -> Option<&'static str> {
    match incident.outcome {
        Outcome::Healed if incident.escalation.is_some() => Some("escalated"),
        Outcome::Healed => Some("healed"),
        Outcome::Failed => None,
        Outcome::GaveUp => Some("gave_up"),
        Outcome::Notified => Some("notified"),
        Outcome::NoAction if incident.escalation.is_some() => Some("escalated"),
        // A recycle is routine (people asked for it); one that cannot keep up is escalated.
        Outcome::Recycled if incident.escalation.is_some() => Some("escalated"),
        Outcome::NoAction | Outcome::DryRun | Outcome::Interrupted | Outcome::Recycled => None,
    }
}

struct Job {
    event: &'static str,
    body: Value,
}

#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Job>>,
    format: NotifyFormat,
    metrics: Metrics,
}

impl Notifier {
    /// No `NOTIFY_URL`: notifications are off.
    pub fn disabled(metrics: Metrics) -> Self {
        Notifier {
            tx: None,
            format: NotifyFormat::Json,
            metrics,
        }
    }

    /// Starts the delivery worker, POSTing to `config.url`.
    pub fn spawn(config: NotifyConfig, metrics: Metrics) -> Self {
        let format = config.format;
        Self::spawn_with(Arc::new(HttpDeliver::new(config)), format, metrics)
    }

    /// Starts the delivery worker over `deliver`, supervised: a panic loses the notification in
    /// hand (counted as failed), and the worker goes on with the rest of the queue.
    pub fn spawn_with(deliver: Arc<dyn Deliver>, format: NotifyFormat, metrics: Metrics) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        {
            let metrics = metrics.clone();
            crate::supervise::spawn("notifier", &metrics.clone(), move || {
                worker(deliver.clone(), rx.clone(), metrics.clone())
            });
        }
        Notifier {
            tx: Some(tx),
            format,
            metrics,
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues the notification for `incident` if it is worth one; returns its event when queued.
    pub fn send(&self, incident: &Incident) -> Option<&'static str> {
        let tx = self.tx.as_ref()?;
        let event = event_of(incident)?;
        let body = match self.format {
            NotifyFormat::Json => json_body(event, incident),
            NotifyFormat::Slack => json!({ "text": slack_text(event, incident) }),
        };
        match tx.try_send(Job { event, body }) {
            Ok(()) => Some(event),
            Err(_) => {
                tracing::warn!(event, "notification queue full; notification dropped");
                self.count(event, "dropped");
                None
            }
        }
    }

    fn count(&self, event: &str, result: &str) {
        self.metrics
            .notifications
            .with_label_values(&[event, result])
            .inc();
    }
}

pub fn json_body(event: &str, i: &Incident) -> Value {
    let replicas: Vec<Value> = i
        .diagnosis
        .iter()
        .filter(|d| d.needs_healing || d.class == i.class)
        .take(20)
        .map(
            |d| json!({ "name": d.name, "class": d.class, "action": d.action, "reason": d.reason }),
        )
        .collect();
    json!({
        "source": "healstack",
        "event": event,
        "incident_id": i.id,
        "service": i.service,
        "project": i.project,
        "outcome": i.outcome,
        "class": i.class,
        "summary": i.summary,
        "replicas": replicas,
        "escalation": i.escalation,
        "scope_note": i.scope_note,
        "mttr_seconds": i.mttr_seconds,
        "at": i.resolved_at.unwrap_or(i.run_started_at),
    })
}

pub fn slack_text(event: &str, i: &Incident) -> String {
    let icon = match event {
        "healed" => ":white_check_mark:",
        "notified" => ":eyes:",
        _ => ":rotating_light:",
    };
    let mut text = format!(
        "{icon} *{}* ({}) {event}: {}",
        i.service,
        i.project,
        i.summary.replace('\n', " ")
    );
    if let Some(e) = &i.escalation {
        text.push_str(&format!("\n>{}", e.detail.replace('\n', " ")));
    }
    text.push_str(&format!(" (incident `{}`)", i.id));
    text
}

async fn worker(deliver: Arc<dyn Deliver>, rx: Arc<Mutex<mpsc::Receiver<Job>>>, metrics: Metrics) {
    let mut rx = rx.lock().await;
    while let Some(job) = rx.recv().await {
        // A panic in the delivery unwinds through this: that notification counts as failed.
        let mut in_hand = InHand {
            metrics: &metrics,
            event: job.event,
            done: false,
        };
        let result = deliver.deliver(&job.body).await;
        in_hand.done = true;
        let label = match &result {
            Ok(()) => "delivered",
            Err(e) => {
                // The URL is a credential: say what failed, never where.
                tracing::warn!(event = job.event, error = %e, "notification not delivered");
                "failed"
            }
        };
        metrics
            .notifications
            .with_label_values(&[job.event, label])
            .inc();
    }
}

/// The notification being delivered; counted as failed if the worker dies with it.
struct InHand<'a> {
    metrics: &'a Metrics,
    event: &'static str,
    done: bool,
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics
                .notifications
                .with_label_values(&[self.event, "failed"])
                .inc();
        }
    }
}

async fn post(http: &reqwest::Client, config: &NotifyConfig, body: &Value) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let wait = match http.post(config.url.expose()).json(body).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) if resp.status().as_u16() == 429 => {
                last = "429 rate limited".into();
                let after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(crate::retry_after::parse)
                    .unwrap_or(Duration::from_secs(1));
                if after > MAX_RETRY_AFTER {
                    return Err(format!("rate limited for {}s", after.as_secs()));
                }
                after
            }
            Ok(resp) if resp.status().is_server_error() => {
                last = format!("HTTP {}", resp.status().as_u16());
                Duration::from_millis(500 * u64::from(attempt))
            }
            Ok(resp) => return Err(format!("refused with HTTP {}", resp.status().as_u16())),
            Err(e) => {
                last = if e.is_timeout() {
                    "timed out".into()
                } else if e.is_connect() {
                    "could not connect".into()
                } else {
                    "request failed".into()
                };
                Duration::from_millis(500 * u64::from(attempt))
            }
        };
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
        }
    }
    Err(format!("{last} ({ATTEMPTS} attempts)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver that answers 429 with `retry_after`, counting requests.
    async fn rate_limiting(
        retry_after: &'static str,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use axum::http::StatusCode;
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", retry_after)],
                        "slow down",
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, hits)
    }

    #[tokio::test]
    async fn an_absurd_retry_after_fails_the_attempt_instead_of_the_worker() {
        let (url, hits) = rate_limiting("1e20").await;
        let config = NotifyConfig {
            url: Secret::new(&url).unwrap(),
            format: NotifyFormat::Json,
            timeout: Duration::from_secs(2),
        };
        let err = HttpDeliver::new(config)
            .deliver(&json!({"x": 1}))
            .await
            .unwrap_err();
        assert!(err.contains("rate limited for 86400s"), "{err}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
