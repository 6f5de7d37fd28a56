//! The self-healing agent: Alertmanager webhooks, Docker events and its own resyncs in;
//! diagnosed, policy-checked, verified actions out.
//!
//! Map of the crate, from the outside in:
//! - [`config`]: settings from environment and flags, validated once at start.
//! - [`startup`]: builds the pieces, serves, drains on shutdown; [`telemetry`]: logging.
//! - [`intake`]: `POST /webhook` (Alertmanager payload v4), `/healthz`, `/metrics`, `/incidents`,
//!   `POST /reset`, `POST /recycle/{service}`; every endpoint but health and metrics needs the
//!   bearer [`token`].
//! - [`engine`]: the controller: triggers coalesced, live state first, replicas claimed by one run
//!   at a time, runs supervised and requeued, one incident per run or settled look.
//! - [`diagnosis`]: observing a service and classifying each replica's failure, by code.
//! - [`policy`]: the one check before every action (allow, deny with a reason, stop), and
//!   [`policy::recycle`], the one decision of preventive recycling; [`trend`]: each replica's
//!   memory trend, for it.
//! - [`agent`]: picks the strategy (LLM provider or runbook) from the settings.
//! - [`tools`]: `list_webapp_status`, `restart_container`, `check_webapp_health` and read-only
//!   diagnosis tools; each run's [`tools::RunRecord`].
//! - [`scope`]: which containers may be touched at all; [`budget`]: restart budgets and backoff;
//!   [`history`]: recurrences and crash loops, for escalation.
//! - [`notify`]: notifications to a human (`NOTIFY_URL`); [`probe`]: the agent's own HTTP checks.
//! - [`runtime`]: the container runtime trait, its bollard implementation and an in-memory one
//!   for tests (knows nothing of LLMs).
//! - [`llm`]: the function-calling loop and its providers (knows nothing of Docker).
//! - [`incidents`]: the incident record and its JSON-lines log; [`metrics`]: the agent's metrics.
//! - [`context`]: what the engine, diagnosis and tools share; [`clock`]: wall time (virtual in tests).
//! - [`secret`]: the one type for the webhook token, API keys and the notification URL;
//!   [`token`]: the bearer token configured, or generated, kept and shared with Alertmanager.

pub mod agent;
pub mod background;
pub mod budget;
pub mod clock;
pub mod config;
pub mod context;
pub mod diagnosis;
pub mod engine;
pub mod history;
pub mod incidents;
pub mod intake;
pub mod ledger;
pub mod llm;
pub mod metrics;
pub mod notify;
pub mod persist;
pub mod policy;
pub mod probe;
pub mod retry_after;
pub mod runtime;
pub mod scope;
pub mod secret;
pub mod startup;
pub mod stops;
pub mod supervise;
pub mod telemetry;
pub mod text;
pub mod token;
pub mod tools;
pub mod trend;

pub use startup::Application;
