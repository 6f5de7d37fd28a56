//! A receiver for the agent's notifications, for the stack: records every POST, serves them at
//! `GET /notifications` (see `fake_llm::notify`).
//!
//! `PORT` (default 8080) on 0.0.0.0; `NOTIFY_SINK_FAIL_FIRST` (default 0): answer 503 to that many
//! requests first. `notify-sink healthcheck` probes `/healthz` for a container healthcheck.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = fake_llm::binary::port()?;
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return fake_llm::binary::healthcheck(port);
    }
    fake_llm::binary::init_tracing();
    let fail_first: usize = match std::env::var("NOTIFY_SINK_FAIL_FIRST") {
        Ok(v) => v
            .parse()
            .context("NOTIFY_SINK_FAIL_FIRST must be a whole number")?,
        Err(_) => 0,
    };
    tracing::info!(port, fail_first, "notify-sink listening");
    fake_llm::binary::serve(port, fake_llm::notify::router(fail_first)).await
}
