//! Gemini through its native REST API (`generateContent`), hand-written over reqwest.
//!
//! The key travels in the `x-goog-api-key` header, never in the URL, so it cannot reach access
//! logs or the error messages reqwest builds from URLs.

pub mod thinking;
mod wire;

use std::time::Duration;

use async_trait::async_trait;

use super::types::{ChatModel, LlmError, Message, ModelTurn, Secret};
use super::ToolSpec;
pub use thinking::ThinkingLevel;

pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// Largest response read: a turn is a few KiB; a runaway body must not take the agent's memory.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// What the Gemini provider needs; the caller's config fills it (the model is never hard-coded here).
#[derive(Debug, Clone)]
pub struct GeminiConfig {
    pub api_key: Secret,
    pub model: String,
    /// Without a trailing path: `https://generativelanguage.googleapis.com` or a test server.
    pub base_url: String,
    /// Limit for one HTTP request; the loop's run deadline applies on top.
    pub request_timeout: Duration,
    /// `GEMINI_THINKING_LEVEL`; sent only to models that take one ([`thinking`]).
    pub thinking_level: ThinkingLevel,
}

pub struct Gemini {
    http: reqwest::Client,
    api_key: Secret,
    model: String,
    endpoint: String,
    /// The `generationConfig` of every request (the thinking level), fixed at start.
    generation_config: Option<serde_json::Value>,
}

impl Gemini {
    pub fn new(config: GeminiConfig) -> Result<Self, LlmError> {
        // Refused at start rather than on every request.
        if reqwest::header::HeaderValue::from_str(config.api_key.expose()).is_err() {
            return Err(LlmError::Client {
                status: 0,
                message: "GEMINI_API_KEY holds characters that cannot travel in an HTTP header"
                    .into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("webhook-receiver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Transport(format!("building the HTTP client: {e}")))?;
        let model = config
            .model
            .trim()
            .trim_start_matches("models/")
            .to_string();
        let endpoint = format!(
            "{}/v1beta/models/{}:generateContent",
            config.base_url.trim_end_matches('/'),
            model
        );
        let generation_config = thinking::generation_config(&model, config.thinking_level);
        match (&generation_config, config.thinking_level.wire()) {
            (Some(_), Some(level)) => {
                tracing::info!(%model, thinking_level = level, "Gemini thinking level")
            }
            (None, Some(level)) => tracing::warn!(
                %model, thinking_level = level,
                "GEMINI_THINKING_LEVEL is not sent: only Gemini 3 and later models take a thinking level"
            ),
            (_, None) => tracing::info!(%model, "Gemini thinking level: the model's default"),
        }
        Ok(Gemini {
            http,
            api_key: config.api_key,
            model,
            endpoint,
            generation_config,
        })
    }
}

#[async_trait]
impl ChatModel for Gemini {
    fn provider(&self) -> &'static str {
        "gemini"
    }

    fn model(&self) -> &str {
        &self.model
    }

    async fn complete(
        &self,
        system: &str,
        history: &[Message],
        tools: &[ToolSpec],
    ) -> Result<ModelTurn, LlmError> {
        self.request(system, history, tools)
            .await
            .map_err(|e| e.scrubbed(Some(&self.api_key)))
    }
}

impl Gemini {
    async fn request(
        &self,
        system: &str,
        history: &[Message],
        tools: &[ToolSpec],
    ) -> Result<ModelTurn, LlmError> {
        let mut request = wire::build_request(system, history, tools);
        request.generation_config = self.generation_config.clone();
        let body = serde_json::to_vec(&request)
            .map_err(|e| LlmError::Decode(format!("encoding the request: {e}")))?;
        // Marked sensitive, so that no Debug output of the request (hyper, reqwest) shows it.
        let mut key =
            reqwest::header::HeaderValue::from_str(self.api_key.expose()).map_err(|_| {
                LlmError::Client {
                    status: 0,
                    message: "GEMINI_API_KEY holds characters that cannot travel in an HTTP header"
                        .into(),
                }
            })?;
        key.set_sensitive(true);
        let mut response = self
            .http
            .post(&self.endpoint)
            .header("x-goog-api-key", key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(LlmError::Decode(format!(
                    "the response is larger than {} MiB",
                    MAX_RESPONSE_BYTES >> 20
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(wire::parse_error(
                status.as_u16(),
                retry_after.as_deref(),
                &bytes,
                &self.api_key,
            ));
        }
        wire::parse_response(&bytes)
    }

    fn transport_error(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout
        } else {
            // reqwest's message includes the URL, which holds no key; scrub anyway.
            LlmError::Transport(self.api_key.scrub(&crate::text::error_chain(&e)))
        }
    }
}
