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
    "recycled",
];
pub const TRIGGER_KINDS: &[&str] = &[
    "alert",
    "event",
    "reconcile",
    "requeue",
    "startup",
    "operator",
    "memory",
];
pub const ESCALATION_REASONS: &[&str] = &[
    "recurrence",
    "crash_on_start",
    "never_healthy",
    "refused",
    "out_of_scope",
    "recycle_behind",
];
/// `suppressed`: not sent, because people were told already (an open escalation covers it).
pub const NOTIFY_RESULTS: &[&str] = &["delivered", "failed", "dropped", "suppressed"];
/// The supervised background loops (`healing_task_panics_total{task}`).
pub const TASKS: &[&str] = &[
    "starter", "events", "resync", "docker", "notifier", "memory",
];
/// Why a replica was recycled (`healing_recycles_total{reason}`): its memory, or an operator's
/// rolling restart.
pub const RECYCLE_REASONS: &[&str] = &["memory", "operator"];
/// `drained`: it exited 0 on SIGTERM; `killed`: the stop timeout ended it; `failed`: it did not
/// serve again in time (reactive healing takes over).
pub const RECYCLE_RESULTS: &[&str] = &["drained", "killed", "failed"];
pub const OUT_OF_SCOPE_RESULTS: &[&str] = &["recorded", "deduplicated", "dropped"];
/// What a notification can be about (see `notify::event_of`).
pub const NOTIFY_EVENTS: &[&str] = &["healed", "failed", "gave_up", "notified", "escalated"];
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
    pub task_panics: IntCounterVec,
    pub out_of_scope: IntCounterVec,
    pub replicas_down: IntGaugeVec,
    pub replicas_given_up: IntGaugeVec,
    pub escalations_open: IntGaugeVec,
    pub service_degraded: IntGaugeVec,
    pub escalations: IntCounterVec,
    pub notifications: IntCounterVec,
    pub incident_log_errors: IntCounterVec,
    /// `healing_replica_info{service, replica, ip} 1` for each running replica: Prometheus finds
    /// replicas by IP, this names them, so dashboards join on `ip` and show `replica`.
    pub replica_info: IntGaugeVec,
    /// Replicas replaced before they failed, apart from repairs (`healing_restarts_total`).
    pub recycles: IntCounterVec,
    /// A recycle from SIGTERM to the new replica's passing healthcheck.
    pub recycle_duration: HistogramVec,
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
        let task_panics = counter(
            "healing_task_panics_total",
            "Panics in the agent's background loops (caught, logged, the loop started again)",
            &["task"],
        );
        let out_of_scope = counter(
            "healing_out_of_scope_total",
            "Alerts about something this agent does not heal: groups recorded, or not (a repeat, or past the rate limit)",
            &["result"],
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
        let recycles = counter(
            "healing_recycles_total",
            "Replicas recycled (stopped gracefully and started) before they failed, by service, reason and result; not repairs",
            &["service", "reason", "result"],
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
        let recycle_duration = HistogramVec::new(
            HistogramOpts::new(
                "healing_recycle_seconds",
                "A recycle from SIGTERM to the new replica's passing healthcheck",
            )
            .buckets(vec![
                0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0,
            ]),
            &["service"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(recycle_duration.clone()))
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
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["service"]).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let circuit_breakers_open = gauge(
            "healing_circuit_breakers_open",
            "Replicas the agent gave up on (a crash on start, never healthy, Docker refuses): left alone, escalated",
        );
        let replicas_down = gauge(
            "healing_replicas_down",
            "Replicas that need healing at the agent's last look (being healed, given up on, or notify-only)",
        );
        let replicas_given_up = gauge(
            "healing_replicas_given_up",
            "Replicas the agent gave up on at its last look (as healing_circuit_breakers_open)",
        );
        let escalations_open = gauge(
            "healing_escalations_open",
            "Escalations told to people and not resolved yet (recurrence, crash on start, refused...)",
        );
        let service_degraded = gauge(
            "healing_service_degraded",
            "1 while the service is degraded: replicas down or given up on, or escalations open",
        );
        let replica_info = IntGaugeVec::new(
            Opts::new(
                "healing_replica_info",
                "1 per running replica of a healed service: its compose container name and address",
            ),
            &["service", "replica", "ip"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(replica_info.clone()))
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
            recycle_duration.with_label_values(&[s.as_str()]);
            for r in RECYCLE_REASONS {
                for x in RECYCLE_RESULTS {
                    recycles.with_label_values(&[s.as_str(), r, x]);
                }
            }
            for g in [
                &circuit_breakers_open,
                &replicas_down,
                &replicas_given_up,
                &escalations_open,
                &service_degraded,
            ] {
                g.with_label_values(&[s.as_str()]);
            }
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
        for e in NOTIFY_EVENTS {
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
        for t in TASKS {
            task_panics.with_label_values(&[t]);
        }
        for r in OUT_OF_SCOPE_RESULTS {
            out_of_scope.with_label_values(&[r]);
        }

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
            task_panics,
            out_of_scope,
            replicas_down,
            replicas_given_up,
            escalations_open,
            service_degraded,
            escalations,
            notifications,
            incident_log_errors,
            replica_info,
            recycles,
            recycle_duration,
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
