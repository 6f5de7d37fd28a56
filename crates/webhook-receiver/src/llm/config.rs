//! Choosing and building the model from plain settings (the app's config module fills them from
//! `LLM_PROVIDER`, `GEMINI_*`, `OPENAI_*`, `LLM_MAX_TURNS`, `LLM_TIMEOUT_SECS`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::agent_loop::Budget;
use super::gemini::{Gemini, GeminiConfig, ThinkingLevel};
use super::openai::{OpenAiCompatible, OpenAiConfig};
use super::types::{ChatModel, LlmError, Secret};

/// The newest stable Flash model (Gemini API, checked 2026-12: `gemini-3.8-flash`, GA since
/// 2026-09-02). The model is configuration (`GEMINI_MODEL`); this is only what a user gets unset.
pub const DEFAULT_GEMINI_MODEL: &str = "gemini-3.8-flash";

/// `LLM_PROVIDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProviderChoice {
    /// Gemini if its key is set, else OpenAI-compatible if configured with a model, else none
    /// (the runbook).
    #[default]
    Auto,
    Gemini,
    OpenAi,
    None,
}

impl FromStr for ProviderChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(ProviderChoice::Auto),
            "gemini" | "google" => Ok(ProviderChoice::Gemini),
            "openai" | "openai-compatible" => Ok(ProviderChoice::OpenAi),
            "none" | "off" | "runbook" => Ok(ProviderChoice::None),
            other => Err(format!(
                "unknown LLM provider {other:?}: use auto, gemini, openai or none"
            )),
        }
    }
}

impl fmt::Display for ProviderChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderChoice::Auto => "auto",
            ProviderChoice::Gemini => "gemini",
            ProviderChoice::OpenAi => "openai",
            ProviderChoice::None => "none",
        })
    }
}

#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub provider: ProviderChoice,
    /// `GEMINI_API_KEY`, else `GOOGLE_API_KEY`.
    pub gemini_api_key: Option<Secret>,
    pub gemini_model: String,
    pub gemini_base_url: String,
    /// `GEMINI_THINKING_LEVEL` (Gemini 3 and later only).
    pub gemini_thinking_level: ThinkingLevel,
    pub openai_api_key: Option<Secret>,
    pub openai_base_url: Option<String>,
    /// Required when the OpenAI-compatible provider is chosen: there is no model every server has.
    pub openai_model: Option<String>,
    /// `LLM_MAX_TURNS`.
    pub max_turns: u32,
    /// `LLM_TIMEOUT_SECS`: wall clock for a whole run; also bounds each request.
    pub run_timeout: Duration,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            provider: ProviderChoice::Auto,
            gemini_api_key: None,
            gemini_model: DEFAULT_GEMINI_MODEL.into(),
            gemini_base_url: super::gemini::DEFAULT_BASE_URL.into(),
            gemini_thinking_level: ThinkingLevel::default(),
            openai_api_key: None,
            openai_base_url: None,
            openai_model: None,
            max_turns: 8,
            run_timeout: Duration::from_secs(60),
        }
    }
}

impl LlmConfig {
    /// The loop's budget for these settings (retry tuning left at its defaults).
    pub fn budget(&self) -> Budget {
        Budget {
            max_turns: self.max_turns.max(1),
            deadline: self.run_timeout,
            max_retry_delay: Budget::default().max_retry_delay.min(self.run_timeout),
            ..Budget::default()
        }
    }

    fn resolved(&self) -> ProviderChoice {
        match self.provider {
            ProviderChoice::Auto if self.gemini_api_key.is_some() => ProviderChoice::Gemini,
            // Only with a model: a stray OPENAI_API_KEY in the shell must not turn into an agent
            // that fails at start (there is no model every OpenAI-compatible server has).
            ProviderChoice::Auto
                if (self.openai_base_url.is_some() || self.openai_api_key.is_some())
                    && self.openai_model.is_some() =>
            {
                ProviderChoice::OpenAi
            }
            ProviderChoice::Auto => ProviderChoice::None,
            chosen => chosen,
        }
    }
}

/// Which model runs, for the start-up log line and `/healthz`. Never holds a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LlmDescription {
    /// `gemini`, `openai` or `none`.
    pub provider: &'static str,
    pub model: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmConfigError {
    #[error("LLM_PROVIDER=gemini needs GEMINI_API_KEY (or GOOGLE_API_KEY)")]
    MissingGeminiKey,
    #[error("LLM_PROVIDER=openai needs OPENAI_BASE_URL or OPENAI_API_KEY")]
    MissingOpenAi,
    #[error(
        "the OpenAI-compatible provider needs OPENAI_MODEL (e.g. the model your server serves)"
    )]
    MissingOpenAiModel,
    #[error("LLM_TIMEOUT_SECS must be between 1 second and 1 hour")]
    TimeoutOutOfRange,
    #[error("could not set up the model client: {0}")]
    Client(#[from] LlmError),
}

/// The model to use, or `None` when the runbook decides alone.
pub fn build(
    config: &LlmConfig,
) -> Result<(Option<Arc<dyn ChatModel>>, LlmDescription), LlmConfigError> {
    let none = LlmDescription {
        provider: "none",
        model: None,
    };
    let chosen = config.resolved();
    // The same range as the setting's, for configs built in code: deadlines are `now + timeout`.
    let timeouts = Duration::from_secs(1)..=Duration::from_secs(3600);
    if chosen != ProviderChoice::None && !timeouts.contains(&config.run_timeout) {
        return Err(LlmConfigError::TimeoutOutOfRange);
    }
    let model: Arc<dyn ChatModel> = match chosen {
        ProviderChoice::None | ProviderChoice::Auto => {
            if config.provider == ProviderChoice::Auto
                && (config.openai_api_key.is_some() || config.openai_base_url.is_some())
            {
                tracing::warn!("OPENAI_API_KEY or OPENAI_BASE_URL is set without OPENAI_MODEL: LLM_PROVIDER=auto uses the built-in runbook");
            }
            return Ok((None, none));
        }
        ProviderChoice::Gemini => {
            let api_key = config
                .gemini_api_key
                .clone()
                .ok_or(LlmConfigError::MissingGeminiKey)?;
            Arc::new(Gemini::new(GeminiConfig {
                api_key,
                model: config.gemini_model.clone(),
                base_url: config.gemini_base_url.clone(),
                request_timeout: config.run_timeout,
                thinking_level: config.gemini_thinking_level,
            })?)
        }
        ProviderChoice::OpenAi => {
            if config.openai_base_url.is_none() && config.openai_api_key.is_none() {
                return Err(LlmConfigError::MissingOpenAi);
            }
            let model = config.openai_model.clone().filter(|m| !m.trim().is_empty());
            Arc::new(OpenAiCompatible::new(OpenAiConfig {
                api_key: config.openai_api_key.clone(),
                base_url: config
                    .openai_base_url
                    .clone()
                    .unwrap_or_else(|| super::openai::DEFAULT_BASE_URL.into()),
                model: model.ok_or(LlmConfigError::MissingOpenAiModel)?,
                request_timeout: config.run_timeout,
            })?)
        }
    };
    let description = LlmDescription {
        provider: model.provider(),
        model: Some(model.model().to_string()),
    };
    Ok((Some(model), description))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Option<Secret> {
        Secret::new("secret-key")
    }

    #[test]
    fn auto_prefers_gemini_then_openai_then_none() {
        let mut c = LlmConfig {
            openai_api_key: key(),
            ..LlmConfig::default()
        };
        assert_eq!(
            build(&c).unwrap().1.provider,
            "none",
            "a key without a model is no OpenAI configuration"
        );
        c.openai_api_key = None;
        c.openai_model = Some("llama3.1".into());
        assert_eq!(build(&c).unwrap().1.provider, "none");
        c.openai_base_url = Some("http://ollama:11434/v1".into());
        assert_eq!(
            build(&c).unwrap().1,
            LlmDescription {
                provider: "openai",
                model: Some("llama3.1".into())
            }
        );
        c.gemini_api_key = key();
        assert_eq!(
            build(&c).unwrap().1,
            LlmDescription {
                provider: "gemini",
                model: Some(DEFAULT_GEMINI_MODEL.into())
            }
        );
        c.provider = ProviderChoice::None;
        assert!(build(&c).unwrap().0.is_none());
    }

    #[test]
    fn explicit_choices_need_their_settings() {
        let c = LlmConfig {
            provider: ProviderChoice::Gemini,
            ..LlmConfig::default()
        };
        assert!(matches!(build(&c), Err(LlmConfigError::MissingGeminiKey)));
        let c = LlmConfig {
            provider: ProviderChoice::OpenAi,
            ..LlmConfig::default()
        };
        assert!(matches!(build(&c), Err(LlmConfigError::MissingOpenAi)));
        let c = LlmConfig {
            provider: ProviderChoice::OpenAi,
            openai_api_key: key(),
            ..LlmConfig::default()
        };
        assert!(matches!(build(&c), Err(LlmConfigError::MissingOpenAiModel)));
    }

    #[test]
    fn provider_names_parse() {
        assert_eq!(
            "Gemini".parse::<ProviderChoice>(),
            Ok(ProviderChoice::Gemini)
        );
        assert_eq!("".parse::<ProviderChoice>(), Ok(ProviderChoice::Auto));
        assert!("claude".parse::<ProviderChoice>().is_err());
    }

    #[test]
    fn debug_output_never_shows_keys() {
        let c = LlmConfig {
            gemini_api_key: key(),
            openai_api_key: key(),
            ..LlmConfig::default()
        };
        assert!(!format!("{c:?}").contains("secret-key"));
    }
}
