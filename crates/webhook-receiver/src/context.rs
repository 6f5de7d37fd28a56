//! What the engine, the diagnosis and the tools share across runs: the runtime, the prober, the
//! ledger of what the agent remembers about each replica, what it knows about stops, and the
//! clock.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::probe::Prober;
use crate::runtime::ContainerRuntime;
use crate::stops::StopLedger;

pub struct Context {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub prober: Arc<dyn Prober>,
    /// Backoff, tries, deaths healed, replicas given up on: read through `facts`, written in one
    /// place.
    pub ledger: Arc<Ledger>,
    /// Stop requests seen and the agent's own stops, persisted.
    pub stops: Arc<StopLedger>,
    pub metrics: Metrics,
    pub clock: Clock,
    pub dry_run: bool,
    /// `RESTART_STABLE_SECS`.
    pub stable_after: Duration,
    /// How long a restarted replica has to serve again.
    pub verify_timeout: Duration,
}
