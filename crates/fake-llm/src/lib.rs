//! Fake LLM servers that speak the real wire formats over HTTP and check what a client sends the
//! way the real APIs do. For tests (start them on `127.0.0.1:0`) and for the end-to-end stack
//! (the `fake-gemini` binary).
//!
//! - [`gemini`]: `POST /v1beta/models/{model}:generateContent`, `x-goog-api-key`, thought
//!   signatures checked, function responses checked against the calls they answer.
//! - [`openai`]: `POST /v1/chat/completions`, Bearer auth, every `tool_call_id` must be answered.
//! - [`healer`]: a Gemini "model" that heals by reading the conversation (for the stack).
//! - [`realistic`]: a Gemini "model" that heals like a real one, mistakes included (scenarios).
//! - [`notify`]: a receiver of the agent's notifications (generic JSON and Slack's format).
//! - [`script`]: scripted replies shared by both fakes.

pub mod binary;
pub mod gemini;
pub mod healer;
pub mod notify;
pub mod openai;
pub mod realistic;
pub mod script;
mod server;

pub use gemini::{Brain, FakeGemini, GeminiOptions};
pub use openai::FakeOpenAi;
pub use script::{call, call_raw, Call, Reply, Script};
pub use server::Recorded;
