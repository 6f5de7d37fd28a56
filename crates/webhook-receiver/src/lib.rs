//! The self-healing agent: Alertmanager webhooks and Docker events in, verified restarts out.
//!
//! Map of the crate, from the outside in:
//! - [`config`]: settings from environment and flags, validated once at start.
//! - [`startup`]: builds the pieces and serves; [`telemetry`]: logging.
//! - [`intake`]: `POST /webhook` (Alertmanager payload v4), `/healthz`, `/metrics`, `/incidents`.
//! - [`engine`]: the controller: one run per service at a time, triggers coalesced, live state first,
//!   the strategy acts, the runbook falls back, verification by code, one incident per run.
//! - [`agent`]: picks the strategy (LLM provider or runbook) from the settings.
//! - [`tools`]: `list_webapp_status`, `restart_container`, `check_webapp_health` and read-only
//!   diagnosis tools, with the guard (scope, need, budget, dry run) in front of every call.
//! - [`scope`]: which containers may be touched at all; [`budget`]: restart budgets and backoff.
//! - [`runtime`]: the container runtime trait and its bollard implementation (knows nothing of LLMs).
//! - [`llm`]: the function-calling loop and its providers (knows nothing of Docker).
//! - [`incidents`]: the incident record and its JSON-lines store; [`metrics`]: the agent's metrics.
//! - [`secret`]: the one type for the webhook token and API keys (never printed).

pub mod agent;
pub mod budget;
pub mod config;
pub mod engine;
pub mod incidents;
pub mod intake;
pub mod llm;
pub mod metrics;
pub mod runtime;
pub mod scope;
pub mod secret;
pub mod startup;
pub mod telemetry;
pub mod tools;

pub use startup::Application;
