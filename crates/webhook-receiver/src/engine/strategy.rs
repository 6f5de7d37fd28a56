//! Who decides what to do in a run: the built-in runbook, or (see [`crate::agent`]) an LLM.
//! Either way the actions go through the run's [`Toolbox`], and the engine verifies the outcome itself.

use async_trait::async_trait;

use crate::incidents::{LlmRecord, Mode, ReplicaDiagnosis, TriggerRecord};
use crate::tools::{Actor, Toolbox};

/// What a strategy is told about the run. Trigger text is untrusted.
#[derive(Debug, Clone)]
pub struct Brief {
    pub service: String,
    pub triggers: Vec<TriggerRecord>,
    pub diagnosis: Vec<ReplicaDiagnosis>,
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

/// The deterministic runbook: restart every replica that needs it, all at once.
pub struct Runbook;

#[async_trait]
impl Strategy for Runbook {
    fn mode(&self) -> Mode {
        Mode::Runbook
    }

    async fn heal(&self, tools: &Toolbox, _brief: &Brief) -> StrategyReport {
        let states = match tools.observe().await {
            Ok(s) => s,
            Err(e) => {
                return StrategyReport {
                    llm: None,
                    failure: Some(format!("could not list replicas: {e}")),
                }
            }
        };
        let names: Vec<String> = states
            .iter()
            .filter(|s| tools.should_heal(s))
            .map(|s| s.container.name.clone())
            .collect();
        // Errors are on the timeline; the engine's verification decides the outcome.
        futures_util::future::join_all(names.iter().map(|n| tools.restart(n, Actor::Runbook)))
            .await;
        StrategyReport::default()
    }
}
