//! Chooses the healing strategy from the settings, and the LLM strategy itself: the model drives the
//! run through the same guarded tools as the runbook. Anything short of a completed loop is a
//! failure the engine answers with the runbook (`mode: fallback`), so an LLM outage is never worse
//! than having no LLM.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use crate::config::{LlmProviderChoice, Settings};
use crate::engine::{Brief, Runbook, Strategy, StrategyReport};
use crate::incidents::{LlmRecord, Mode, TriggerKind};
use crate::llm::{self, Budget, ChatModel, LlmConfig, LoopEnd, ProviderChoice};
use crate::metrics::Metrics;
use crate::text::bounded as guard_bounded;
use crate::tools::Toolbox;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot set up the LLM provider: {0}")]
    Provider(#[from] llm::LlmConfigError),
}

pub fn llm_config(s: &Settings) -> LlmConfig {
    let non_empty = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_string());
    LlmConfig {
        provider: match s.llm_provider {
            LlmProviderChoice::Auto => ProviderChoice::Auto,
            LlmProviderChoice::Gemini => ProviderChoice::Gemini,
            LlmProviderChoice::Openai => ProviderChoice::OpenAi,
            LlmProviderChoice::None => ProviderChoice::None,
        },
        gemini_api_key: s.gemini_key(),
        gemini_model: s.gemini_model.clone(),
        gemini_base_url: s.gemini_base_url.clone(),
        gemini_thinking_level: s.gemini_thinking_level,
        openai_api_key: s.openai_key(),
        openai_base_url: non_empty(&s.openai_base_url),
        openai_model: non_empty(&s.openai_model),
        max_turns: s.llm_max_turns,
        run_timeout: s.llm_timeout,
    }
}

pub fn build_strategy(
    settings: &Settings,
    metrics: &Metrics,
) -> Result<Arc<dyn Strategy>, AgentError> {
    let config = llm_config(settings);
    let (model, _description) = llm::build(&config)?;
    Ok(match model {
        Some(model) => Arc::new(LlmStrategy {
            model,
            budget: config.budget(),
            metrics: metrics.clone(),
        }),
        None => Arc::new(Runbook),
    })
}

pub struct LlmStrategy {
    pub model: Arc<dyn ChatModel>,
    pub budget: Budget,
    pub metrics: Metrics,
}

#[async_trait]
impl Strategy for LlmStrategy {
    fn mode(&self) -> Mode {
        Mode::Llm
    }

    fn describe(&self) -> Option<(String, String)> {
        Some((
            self.model.provider().to_string(),
            self.model.model().to_string(),
        ))
    }

    async fn heal(&self, tools: &Toolbox, brief: &Brief) -> StrategyReport {
        let kind = match brief.triggers.first().map(|t| t.kind) {
            Some(TriggerKind::Event) => "docker event",
            Some(TriggerKind::Alert) => "alert",
            _ => "check by the agent",
        };
        // Everything from the outside world goes to the model as data, bounded by the prompt builder.
        let untrusted = json!(brief
            .triggers
            .iter()
            .take(10)
            .map(|t| json!({ "name": t.name, "at": t.at, "container": t.container, "summary": t.summary }))
            .collect::<Vec<_>>())
        .to_string();
        let system = llm::prompts::system_prompt(&brief.service);
        let user = llm::prompts::user_prompt_with_diagnosis(
            &brief.service,
            kind,
            &diagnosis_for_model(brief),
            &untrusted,
        );
        let report = llm::run(
            self.model.as_ref(),
            tools,
            &system,
            &user,
            &self.budget,
            Some(&self.metrics),
        )
        .await;
        tracing::info!(
            provider = %report.provider, model = %report.model, turns = report.turns,
            prompt_tokens = report.prompt_tokens, output_tokens = report.output_tokens,
            model_ms = report.model_latency.as_millis() as u64, added_ms = report.added_time().as_millis() as u64,
            end = %report.end.describe(), "model run finished"
        );
        let failure = (report.end != LoopEnd::Completed).then(|| report.end.describe());
        StrategyReport {
            llm: Some(LlmRecord {
                provider: report.provider.clone(),
                model: report.model.clone(),
                turns: report.turns,
                prompt_tokens: report.prompt_tokens,
                output_tokens: report.output_tokens,
                model_seconds: report.model_latency.as_secs_f64(),
                summary: report.summary.clone(),
                ended: report.end.describe(),
            }),
            failure,
        }
    }
}

/// The diagnosis as the model gets it in its first turn: per replica its class, the one action it
/// allows, and the evidence, with log lines trimmed (they are untrusted and can be long).
pub fn diagnosis_for_model(brief: &Brief) -> serde_json::Value {
    let replicas: Vec<serde_json::Value> = brief
        .diagnosis
        .iter()
        .take(crate::tools::MAX_REPLICAS_LISTED)
        .map(|d| {
            let in_run = brief.claimed.contains(&d.name);
            json!({
                "name": d.name,
                "in_this_run": in_run,
                "class": d.class,
                "allowed_action": if in_run { d.action } else { crate::incidents::ActionKind::None },
                "reason": d.reason,
                "status": d.status,
                "exit_code": d.exit_code,
                "oom_killed": d.oom_killed,
                "health": d.health,
                "uptime_seconds": d.uptime_seconds,
                "memory_limit_bytes": d.memory_limit_bytes,
                "last_log_lines": d.logs_tail.iter().rev().take(5).rev().map(|l| guard_bounded(l, 200)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "service": brief.service, "replicas": replicas })
}
