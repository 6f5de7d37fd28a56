//! The LLM function-calling loop and its providers.
//!
//! This module knows nothing about Docker. It sees tools only through [`ToolExecutor`]: a list of
//! declarations and one async `call`. The tools module implements it over the container runtime,
//! with the scope and budget checks in front of every call.
//!
//! - [`types`]: provider-neutral messages, [`ChatModel`], [`LlmError`]; API keys are [`crate::secret::Secret`].
//! - [`gemini`]: Gemini's native REST API over reqwest; [`openai`]: OpenAI-compatible servers.
//! - [`agent_loop`]: [`run`] with its [`Budget`] and [`LoopReport`].
//! - [`prompts`]: the system and user prompts, untrusted text bounded and fenced.
//! - [`config`]: [`LlmConfig`] and [`build`], which picks the provider.

pub mod agent_loop;
pub mod config;
pub mod gemini;
pub mod openai;
pub mod prompts;
pub mod types;

pub use agent_loop::{run, Budget, LoopEnd, LoopReport, ToolCallRecord};
pub use config::{build, LlmConfig, LlmConfigError, LlmDescription, ProviderChoice};
pub use types::{
    ChatModel, LlmError, Message, ModelTurn, Secret, ToolArgs, ToolCall, ToolResult, Usage,
};

use async_trait::async_trait;
use serde_json::Value;

/// A tool as the model sees it: a name, what it does, and a JSON schema (OpenAPI subset) of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// What a tool call produced. `Error` is a value the model sees and may react to;
/// `Stop` ends the run (the policy said no further actions may be taken).
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutcome {
    Ok(Value),
    Error(String),
    Stop(String),
}

/// The loop's only view of the tools.
#[async_trait]
pub trait ToolExecutor: Send + Sync {
    fn specs(&self) -> Vec<ToolSpec>;
    /// Run one call. `args` is whatever the model sent (possibly not an object); implementations
    /// validate it and answer `Error` rather than panicking.
    async fn call(&self, name: &str, args: &Value) -> ToolOutcome;
}
