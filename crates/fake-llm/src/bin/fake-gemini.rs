//! A fake Gemini for the stack: heals by reading the conversation.
//!
//! `PORT` (default 8080) on 0.0.0.0; `FAKE_LATENCY_MS` (default 500) per answer;
//! `FAKE_GEMINI_API_KEY` the key to require (unset: any non-empty key);
//! `FAKE_BRAIN`: `healer` (default: heals by the book) or `realistic` (heals like a real model,
//! mistakes included; `FAKE_SEED`, default 1, picks each conversation's mistakes).
//! `fake-gemini healthcheck` probes `/healthz` for a container healthcheck (the image needs no curl).

use std::time::Duration;

use anyhow::Context;
use fake_llm::realistic::Realistic;
use fake_llm::{gemini, Brain, GeminiOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = fake_llm::binary::port()?;
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return fake_llm::binary::healthcheck(port);
    }
    fake_llm::binary::init_tracing();
    let latency_ms: u64 = match std::env::var("FAKE_LATENCY_MS") {
        Ok(v) => v.parse().context("FAKE_LATENCY_MS must be milliseconds")?,
        Err(_) => 500,
    };
    let seed: u64 = match std::env::var("FAKE_SEED") {
        Ok(v) => v.parse().context("FAKE_SEED must be a whole number")?,
        Err(_) => 1,
    };
    let brain = match std::env::var("FAKE_BRAIN").as_deref() {
        Err(_) | Ok("") | Ok("healer") => Brain::Healer,
        Ok("realistic") => Brain::Realistic(Realistic::new(seed)),
        Ok(other) => anyhow::bail!("FAKE_BRAIN must be healer or realistic, got {other:?}"),
    };
    let options = GeminiOptions {
        api_key: std::env::var("FAKE_GEMINI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
        call_ids: false,
        latency: Duration::from_millis(latency_ms),
    };
    let brain_name = match &brain {
        Brain::Realistic(_) => "realistic",
        _ => "healer",
    };
    tracing::info!(
        port,
        latency_ms,
        brain = brain_name,
        seed,
        "fake-gemini listening"
    );
    fake_llm::binary::serve(port, gemini::router(brain, options)).await
}
