//! The function-calling loop: ask the model, run the calls it asks for, answer, repeat.
//!
//! It ends on a turn without calls (the model's final summary), on the turn budget, on the run's
//! deadline, on a repeated identical call, when a tool says `Stop`, or when the model fails for good.
//! Tool failures are values the model sees, never aborts.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::future::join_all;
use serde::{Serialize, Serializer};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::prompts::bound_tool_output;
use super::types::{ChatModel, LlmError, Message, ModelTurn, RetryAdvice, ToolArgs, ToolResult};
use super::{ToolExecutor, ToolOutcome};
use crate::metrics::Metrics;

/// Limits of one run.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Model responses per run (each answered turn counts, retries do not).
    pub max_turns: u32,
    /// Wall-clock limit for the whole run, from the call to [`run`].
    pub deadline: Duration,
    /// Requests per turn, the first included, for retryable errors (429, 5xx, timeouts).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest 429 `retryDelay` honoured; a longer one (a daily quota) fails the run at once.
    pub max_retry_delay: Duration,
    /// How often one exact call (same tool, same arguments) may be made in a run.
    pub max_identical_calls: u32,
    /// Characters of one tool result sent to the model.
    pub max_tool_output_chars: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_turns: 8,
            deadline: Duration::from_secs(60),
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_delay: Duration::from_secs(30),
            max_identical_calls: 2,
            max_tool_output_chars: super::prompts::MAX_TOOL_OUTPUT_CHARS,
        }
    }
}

/// How a run ended. Anything but `Completed` means the caller should finish the job itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoopEnd {
    /// The model answered without calls; its text is the summary.
    Completed,
    /// The model could not be used (a 4xx, or retries exhausted).
    Failed {
        reason: String,
    },
    TurnBudget,
    Deadline,
    /// The model asked for the same call again (more than `max_identical_calls`).
    RepeatedCall {
        tool: String,
    },
    /// A tool answered `Stop`.
    Stopped {
        reason: String,
    },
}

impl LoopEnd {
    /// A short reason for incidents and logs ("fallback: ...").
    pub fn describe(&self) -> String {
        match self {
            LoopEnd::Completed => "completed".into(),
            LoopEnd::Failed { reason } => format!("model failed: {reason}"),
            LoopEnd::TurnBudget => "turn budget exhausted".into(),
            LoopEnd::Deadline => "run deadline reached".into(),
            LoopEnd::RepeatedCall { tool } => format!("repeated identical call to {tool}"),
            LoopEnd::Stopped { reason } => format!("stopped by policy: {reason}"),
        }
    }
}

/// One tool call as executed (or refused) in the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallRecord {
    /// The model turn (1-based) that asked for it.
    pub turn: u32,
    pub name: String,
    /// The arguments; the raw text when they were not valid JSON.
    pub args: Value,
    /// The (bounded) output, `{"error": ...}` or `{"stop": ...}`.
    pub result: Value,
    pub ok: bool,
}

/// What happened in a run: everything the incident record needs.
#[derive(Debug, Clone, Serialize)]
pub struct LoopReport {
    pub provider: String,
    pub model: String,
    /// Model responses received.
    pub turns: u32,
    /// HTTP requests made, retries included.
    pub model_requests: u32,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    pub tool_calls: Vec<ToolCallRecord>,
    /// The model's final text (or the last text it produced when the run ended otherwise).
    pub summary: Option<String>,
    pub end: LoopEnd,
    /// Model errors met on the way, retried or not.
    pub model_errors: Vec<String>,
    /// Time spent waiting for the model, retries included (not the retry sleeps).
    #[serde(rename = "model_latency_ms", serialize_with = "millis")]
    pub model_latency: Duration,
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

impl LoopReport {
    /// Time the run spent outside the model (tools, retry sleeps, our own work).
    pub fn added_time(&self) -> Duration {
        self.elapsed.saturating_sub(self.model_latency)
    }
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Runs the loop until it ends; never panics and never returns early without a report.
pub async fn run(
    model: &dyn ChatModel,
    tools: &dyn ToolExecutor,
    system_prompt: &str,
    user_prompt: &str,
    budget: &Budget,
    metrics: Option<&Metrics>,
) -> LoopReport {
    let started = Instant::now();
    let mut run = Run {
        model,
        budget,
        metrics,
        deadline: started + budget.deadline,
        report: LoopReport {
            provider: model.provider().to_string(),
            model: model.model().to_string(),
            turns: 0,
            model_requests: 0,
            prompt_tokens: 0,
            output_tokens: 0,
            tool_calls: Vec::new(),
            summary: None,
            end: LoopEnd::Completed,
            model_errors: Vec::new(),
            model_latency: Duration::ZERO,
            elapsed: Duration::ZERO,
        },
    };
    let specs = tools.specs();
    let known: HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let mut history = vec![Message::User(user_prompt.to_string())];
    let mut seen: HashMap<(String, String), u32> = HashMap::new();

    let end = loop {
        let turn = match run.request(system_prompt, &history, &specs).await {
            Ok(turn) => turn,
            Err(end) => break end,
        };
        let number = run.report.turns;
        if let Some(text) = &turn.turn.text {
            run.report.summary = Some(text.clone());
        }
        let calls = turn.turn.tool_calls.clone();
        if calls.is_empty() {
            break LoopEnd::Completed;
        }
        if let Some(tool) = repeated_call(&mut seen, &calls, budget.max_identical_calls) {
            break LoopEnd::RepeatedCall { tool };
        }
        history.push(Message::Assistant(turn.turn));

        // All calls of a turn run concurrently, and are answered together in their order. They
        // are not cancelled at the deadline: a restart half done is worse than a late answer.
        let outcomes = join_all(calls.iter().map(|call| async move {
            match &call.args {
                ToolArgs::Json(args) => tools.call(&call.name, args).await,
                ToolArgs::Malformed { error, .. } => ToolOutcome::Error(format!(
                    "the arguments are not valid JSON ({error}); call again with a JSON object"
                )),
            }
        }))
        .await;

        let mut results = Vec::with_capacity(calls.len());
        let mut stop = None;
        for (call, outcome) in calls.iter().zip(outcomes) {
            let (label, ok, result, record) = match outcome {
                ToolOutcome::Ok(v) => {
                    let v = bound_tool_output(v, budget.max_tool_output_chars);
                    ("ok", true, Ok(v.clone()), v)
                }
                ToolOutcome::Error(e) => ("error", false, Err(e.clone()), json!({ "error": e })),
                ToolOutcome::Stop(reason) => {
                    stop.get_or_insert_with(|| reason.clone());
                    (
                        "stop",
                        false,
                        Err(reason.clone()),
                        json!({ "stop": reason }),
                    )
                }
            };
            // Tool calls are counted by the tools themselves; only calls whose arguments never
            // reached them (not JSON) are counted here, so each call counts once.
            if let (Some(m), ToolArgs::Malformed { .. }) = (metrics, &call.args) {
                let tool = if known.contains(call.name.as_str()) {
                    call.name.as_str()
                } else {
                    "unknown"
                };
                m.tool_calls.with_label_values(&[tool, label]).inc();
            }
            run.report.tool_calls.push(ToolCallRecord {
                turn: number,
                name: call.name.clone(),
                args: call.args.to_value(),
                result: record,
                ok,
            });
            results.push(ToolResult {
                call_id: call.id.clone(),
                name: call.name.clone(),
                result,
            });
        }
        if let Some(reason) = stop {
            break LoopEnd::Stopped { reason };
        }
        history.push(Message::ToolResults(results));
        if run.report.turns >= budget.max_turns {
            break LoopEnd::TurnBudget;
        }
    };
    run.report.end = end;
    run.report.elapsed = started.elapsed();
    tracing::info!(
        provider = %run.report.provider,
        model = %run.report.model,
        turns = run.report.turns,
        tool_calls = run.report.tool_calls.len(),
        prompt_tokens = run.report.prompt_tokens,
        output_tokens = run.report.output_tokens,
        model_latency_ms = run.report.model_latency.as_millis() as u64,
        end = %run.report.end.describe(),
        "llm run finished"
    );
    run.report
}

/// The first call of `calls` that would exceed `max` identical calls in this run; counts are only
/// committed when the whole turn passes.
fn repeated_call(
    seen: &mut HashMap<(String, String), u32>,
    calls: &[super::types::ToolCall],
    max: u32,
) -> Option<String> {
    let mut next = seen.clone();
    for call in calls {
        let args = match &call.args {
            ToolArgs::Json(v) => v.to_string(),
            ToolArgs::Malformed { raw, .. } => raw.clone(),
        };
        let count = next.entry((call.name.clone(), args)).or_insert(0);
        *count += 1;
        if *count > max {
            return Some(call.name.clone());
        }
    }
    *seen = next;
    None
}

struct Run<'a> {
    model: &'a dyn ChatModel,
    budget: &'a Budget,
    metrics: Option<&'a Metrics>,
    deadline: Instant,
    report: LoopReport,
}

impl Run<'_> {
    /// One model turn, with retries; `Err` is how the run ends.
    async fn request(
        &mut self,
        system: &str,
        history: &[Message],
        specs: &[super::ToolSpec],
    ) -> Result<ModelTurn, LoopEnd> {
        let provider = self.model.provider();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if Instant::now() >= self.deadline {
                return Err(LoopEnd::Deadline);
            }
            let t0 = Instant::now();
            let result =
                tokio::time::timeout_at(self.deadline, self.model.complete(system, history, specs))
                    .await;
            let latency = t0.elapsed();
            self.report.model_latency += latency;
            self.report.model_requests += 1;
            if let Some(m) = self.metrics {
                m.llm_request_duration
                    .with_label_values(&[provider])
                    .observe(latency.as_secs_f64());
            }
            let error = match result {
                Err(_elapsed) => {
                    self.count(LlmError::Timeout.outcome_label());
                    self.report
                        .model_errors
                        .push("the run deadline cut a model request short".into());
                    return Err(LoopEnd::Deadline);
                }
                Ok(Ok(turn)) => {
                    self.count("ok");
                    self.report.turns += 1;
                    self.report.prompt_tokens += turn.usage.prompt_tokens;
                    self.report.output_tokens += turn.usage.output_tokens;
                    if let Some(m) = self.metrics {
                        m.llm_tokens
                            .with_label_values(&[provider, "prompt"])
                            .inc_by(turn.usage.prompt_tokens);
                        m.llm_tokens
                            .with_label_values(&[provider, "output"])
                            .inc_by(turn.usage.output_tokens);
                    }
                    return Ok(turn);
                }
                Ok(Err(e)) => e,
            };
            self.count(error.outcome_label());
            tracing::warn!(provider, attempt, error = %error, "model request failed");
            if self.report.model_errors.len() < 20 {
                self.report.model_errors.push(error.to_string());
            }
            let server_delay = match error.retry_advice() {
                RetryAdvice::Never => {
                    return Err(LoopEnd::Failed {
                        reason: error.to_string(),
                    })
                }
                RetryAdvice::After(d) => d,
            };
            if attempt >= self.budget.max_attempts {
                return Err(LoopEnd::Failed {
                    reason: format!("{error} (gave up after {attempt} attempts)"),
                });
            }
            let delay = match server_delay {
                Some(d) if d > self.budget.max_retry_delay => {
                    return Err(LoopEnd::Failed {
                        reason: format!(
                            "{error}: the provider asks to wait longer than the {}s a run may wait",
                            self.budget.max_retry_delay.as_secs()
                        ),
                    })
                }
                Some(d) => d,
                None => self.backoff(attempt),
            };
            if Instant::now() + delay >= self.deadline {
                return Err(LoopEnd::Failed {
                    reason: format!("{error}: no time left in the run to retry"),
                });
            }
            tokio::time::sleep(delay).await;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.budget
            .initial_backoff
            .saturating_mul(factor)
            .min(self.budget.max_backoff)
    }

    fn count(&self, outcome: &str) {
        if let Some(m) = self.metrics {
            m.llm_requests
                .with_label_values(&[self.model.provider(), outcome])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests;
