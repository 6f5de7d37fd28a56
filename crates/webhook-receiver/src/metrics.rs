//! The agent's own Prometheus metrics, all in one place.
//!
//! Names follow `healing_<thing>_<unit>_total`; labels come from small fixed sets (never a container id
//! or an error message). Every label combination the dashboard queries is pre-initialised to zero so
//! that panels show 0 rather than "no data" on a fresh agent.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub const WEBHOOK_RESULTS: &[&str] = &[
    "accepted",
    "unauthorized",
    "bad_request",
    "unsupported_media_type",
    "payload_too_large",
];
pub const OUTCOMES: &[&str] = &[
    "healed",
    "no_action",
    "gave_up",
    "failed",
    "dry_run",
    "interrupted",
    "notified",
];
pub const TRIGGER_KINDS: &[&str] = &[
    "alert",
    "event",
    "reconcile",
    "requeue",
    "startup",
    "operator",
];
pub const ESCALATION_REASONS: &[&str] = &[
    "recurrence",
    "crash_on_start",
    "budget_spent",
    "out_of_scope",
];
pub const NOTIFY_RESULTS: &[&str] = &["delivered", "failed", "dropped"];
pub const MODES: &[&str] = &["runbook", "llm", "fallback"];
pub const RESTART_RESULTS: &[&str] = &["ok", "error", "denied"];
pub const LLM_OUTCOMES: &[&str] = &[
    "ok",
    "rate_limited",
    "server_error",
    "client_error",
    "timeout",
    "transport_error",
];
pub const TOKEN_KINDS: &[&str] = &["prompt", "output"];
pub const TOOL_OUTCOMES: &[&str] = &["ok", "error", "stop"];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub webhooks_received: IntCounterVec,
    pub incidents: IntCounterVec,
    pub restarts: IntCounterVec,
    pub time_to_recovery: HistogramVec,
    pub circuit_breakers_open: IntGaugeVec,
    pub docker_up: IntGauge,
    pub llm_requests: IntCounterVec,
    pub llm_tokens: IntCounterVec,
    pub tool_calls: IntCounterVec,
    pub llm_request_duration: HistogramVec,
    pub triggers: IntCounterVec,
    pub deduplicated: IntCounterVec,
    pub requeues: IntCounterVec,
    pub run_panics: IntCounterVec,
    pub escalations: IntCounterVec,
    pub notifications: IntCounterVec,
    pub incident_log_errors: IntCounterVec,
}

impl Metrics {
    /// Registers every metric in a fresh registry and pre-initialises the label sets
    /// for `services` (the healable services), `providers` and `tools`.
    pub fn new(services: &[String], providers: &[&str], tools: &[&str]) -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let webhooks_received = counter(
            "healing_webhooks_received_total",
            "Alertmanager webhook requests by result",
            &["result"],
        );
        let incidents = counter(
            "healing_incidents_total",
            "Healing runs recorded, by outcome and mode",
            &["outcome", "mode"],
        );
        let restarts = counter(
            "healing_restarts_total",
            "Container start/restart attempts by service and result",
            &["service", "result"],
        );
        let llm_requests = counter(
            "healing_llm_requests_total",
            "Model requests by provider and outcome",
            &["provider", "outcome"],
        );
        let llm_tokens = counter(
            "healing_llm_tokens_total",
            "Model tokens by provider and kind",
            &["provider", "kind"],
        );
        let tool_calls = counter(
            "healing_tool_calls_total",
            "Tool calls by the model, by tool and outcome",
            &["tool", "outcome"],
        );
        let triggers = counter(
            "healing_triggers_total",
            "Triggers for healable services, by kind",
            &["kind"],
        );
        let deduplicated = counter(
            "healing_deduplicated_total",
            "Looks that found the same settled state as the last record, not recorded again",
            &["service"],
        );
        let requeues = counter(
            "healing_requeues_total",
            "Services looked at again after a failed run or an unreachable Docker",
            &["service"],
        );
        let run_panics = counter(
            "healing_run_panics_total",
            "Healing runs that ended abnormally inside the agent (caught, recorded, requeued)",
            &["service"],
        );
        let escalations = counter(
            "healing_escalations_total",
            "Incidents escalated to a human, by reason",
            &["reason"],
        );
        let notifications = counter(
            "healing_notifications_total",
            "Notifications to NOTIFY_URL by event and result",
            &["event", "result"],
        );
        let incident_log_errors = counter(
            "healing_incident_log_errors_total",
            "Incident log writes that failed (full disk, I/O error); the incident stays in memory",
            &["op"],
        );

        let time_to_recovery = HistogramVec::new(
            HistogramOpts::new(
                "healing_time_to_recovery_seconds",
                "From outage start to verified recovery",
            )
            .buckets(vec![
                0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            &["service"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(time_to_recovery.clone()))
            .expect("unique metric");
        let llm_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "healing_llm_request_duration_seconds",
                "Model request latency",
            )
            .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]),
            &["provider"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(llm_request_duration.clone()))
            .expect("unique metric");
        let circuit_breakers_open = IntGaugeVec::new(
            Opts::new(
                "healing_circuit_breakers_open",
                "Replicas whose restart budget is spent (left alone)",
            ),
            &["service"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(circuit_breakers_open.clone()))
            .expect("unique metric");
        let docker_up = IntGauge::new("healing_docker_up", "1 when the Docker daemon is reachable")
            .expect("valid metric");
        registry
            .register(Box::new(docker_up.clone()))
            .expect("unique metric");

        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");

        for r in WEBHOOK_RESULTS {
            webhooks_received.with_label_values(&[r]);
        }
        for o in OUTCOMES {
            for m in MODES {
                incidents.with_label_values(&[o, m]);
            }
        }
        for s in services {
            for r in RESTART_RESULTS {
                restarts.with_label_values(&[s.as_str(), r]);
            }
            time_to_recovery.with_label_values(&[s.as_str()]);
            circuit_breakers_open.with_label_values(&[s.as_str()]);
        }
        for p in providers {
            for o in LLM_OUTCOMES {
                llm_requests.with_label_values(&[p, o]);
            }
            for k in TOKEN_KINDS {
                llm_tokens.with_label_values(&[p, k]);
            }
            llm_request_duration.with_label_values(&[p]);
        }
        for t in tools {
            for o in TOOL_OUTCOMES {
                tool_calls.with_label_values(&[t, o]);
            }
        }
        for k in TRIGGER_KINDS {
            triggers.with_label_values(&[k]);
        }
        for r in ESCALATION_REASONS {
            escalations.with_label_values(&[r]);
        }
        for e in crate::notify::EVENTS {
            for r in NOTIFY_RESULTS {
                notifications.with_label_values(&[e, r]);
            }
        }
        for s in services {
            deduplicated.with_label_values(&[s.as_str()]);
            requeues.with_label_values(&[s.as_str()]);
            run_panics.with_label_values(&[s.as_str()]);
        }
        incident_log_errors.with_label_values(&["append"]);

        Metrics {
            registry,
            webhooks_received,
            incidents,
            restarts,
            time_to_recovery,
            circuit_breakers_open,
            docker_up,
            llm_requests,
            llm_tokens,
            tool_calls,
            llm_request_duration,
            triggers,
            deduplicated,
            requeues,
            run_panics,
            escalations,
            notifications,
            incident_log_errors,
        }
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition format is UTF-8")
    }
}
