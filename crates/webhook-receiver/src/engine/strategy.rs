//! Who decides what to do in a run: the built-in runbook, or (see [`crate::agent`]) an LLM.
//! Either way the actions go through the run's [`Toolbox`] and its policy, and the engine verifies
//! the outcome itself.

use async_trait::async_trait;

use crate::incidents::{LlmRecord, Mode, ReplicaDiagnosis, TriggerRecord};
use crate::policy::Actor;
use crate::tools::Toolbox;

/// What a strategy is told about the run. Trigger text and log lines are untrusted.
#[derive(Debug, Clone)]
pub struct Brief {
    pub service: String,
    pub triggers: Vec<TriggerRecord>,
    /// Every replica of the service as the run found it.
    pub diagnosis: Vec<ReplicaDiagnosis>,
    /// The replicas this run heals (others are healthy, stopped on purpose, or another run's).
    pub claimed: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct StrategyReport {
    pub llm: Option<LlmRecord>,
    /// Set when the strategy could not do its job (provider down, budget spent...): the runbook
    /// then finishes the run and the incident says `fallback` with this reason.
    pub failure: Option<String>,
}

#[async_trait]
pub trait Strategy: Send + Sync {
    fn mode(&self) -> Mode;
    /// Provider and model, for `/healthz` and logs; `None` for the runbook.
    fn describe(&self) -> Option<(String, String)> {
        None
    }
    async fn heal(&self, tools: &Toolbox, brief: &Brief) -> StrategyReport;
}

/// The deterministic runbook: every claimed replica gets the action its class allows, all at
/// once. Each call re-reads the replica's live state and passes the policy, so a replica the
/// model already healed, or one that recovered, is left alone.
pub struct Runbook;

#[async_trait]
impl Strategy for Runbook {
    fn mode(&self) -> Mode {
        Mode::Runbook
    }

    async fn heal(&self, tools: &Toolbox, _brief: &Brief) -> StrategyReport {
        let acted = tools.record().acted();
        let names: Vec<&String> = tools
            .claimed()
            .iter()
            .filter(|n| !acted.iter().any(|a| &a.container.name == *n))
            .collect();
        // Errors and refusals are on the timeline; the engine's verification decides the outcome.
        futures_util::future::join_all(names.iter().map(|n| tools.act(n, Actor::Runbook))).await;
        StrategyReport::default()
    }
}
