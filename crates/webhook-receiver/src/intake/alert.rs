//! Alertmanager's webhook payload (version 4). Unknown fields are ignored; everything in it is
//! untrusted text that can only narrow what is healed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    pub version: String,
    #[serde(default)]
    pub group_key: String,
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub fingerprint: String,
}

/// Labels that may name the service an alert is about, in order of preference.
pub const SERVICE_LABELS: &[&str] = &["service", "compose_service", "job"];

impl Alert {
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("unnamed")
    }

    pub fn is_firing(&self) -> bool {
        self.status == "firing"
    }

    /// The first service-naming label's value.
    pub fn service(&self) -> Option<&str> {
        SERVICE_LABELS
            .iter()
            .find_map(|l| self.labels.get(*l))
            .map(String::as_str)
    }

    /// The compose project an alert names, if it names one.
    pub fn project(&self) -> Option<&str> {
        ["compose_project", "project"]
            .iter()
            .find_map(|l| self.labels.get(*l))
            .map(String::as_str)
    }

    pub fn summary(&self) -> Option<&str> {
        self.annotations
            .get("summary")
            .or_else(|| self.annotations.get("description"))
            .map(String::as_str)
    }
}
