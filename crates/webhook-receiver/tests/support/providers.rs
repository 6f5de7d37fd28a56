//! The real LLM providers pointed at the fakes (crates/fake-llm), with the fakes' keys.

use std::time::Duration;

use fake_llm::{FakeGemini, FakeOpenAi};
use webhook_receiver::llm::gemini::{Gemini, GeminiConfig, ThinkingLevel};
use webhook_receiver::llm::openai::{OpenAiCompatible, OpenAiConfig};
use webhook_receiver::llm::Secret;

/// Gemini at `url` with the fake's key, `gemini-3.5-flash` and the default thinking level; a
/// test changes a field with `GeminiConfig { model: ..., ..gemini_config(url) }`.
pub fn gemini_config(url: &str) -> GeminiConfig {
    GeminiConfig {
        api_key: Secret::new(FakeGemini::API_KEY).unwrap(),
        model: "gemini-3.5-flash".into(),
        base_url: url.into(),
        request_timeout: Duration::from_secs(10),
        thinking_level: ThinkingLevel::default(),
    }
}

/// [`gemini_config`] as a client.
pub fn gemini(url: &str) -> Gemini {
    Gemini::new(gemini_config(url)).unwrap()
}

/// The OpenAI-compatible provider at `url` with the fake's key and model `gpt-test`.
pub fn openai(url: &str) -> OpenAiCompatible {
    OpenAiCompatible::new(OpenAiConfig {
        api_key: Secret::new(FakeOpenAi::API_KEY),
        base_url: url.into(),
        model: "gpt-test".into(),
        request_timeout: Duration::from_secs(10),
    })
    .unwrap()
}
