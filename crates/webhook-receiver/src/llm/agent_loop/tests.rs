//! Loop behaviours against a scripted model and fake tools, in paused time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::llm::types::{AssistantTurn, ToolCall, Usage};
use crate::llm::ToolSpec;

type Step = (Duration, Result<ModelTurn, LlmError>);

struct ScriptedModel {
    steps: Mutex<VecDeque<Step>>,
    /// Repeats this step when the script is exhausted.
    forever: Option<Box<dyn Fn(u32) -> Step + Send + Sync>>,
    calls: AtomicUsize,
    histories: Mutex<Vec<Vec<Message>>>,
}

impl ScriptedModel {
    fn new(steps: Vec<Step>) -> Self {
        ScriptedModel {
            steps: Mutex::new(steps.into()),
            forever: None,
            calls: AtomicUsize::new(0),
            histories: Mutex::new(Vec::new()),
        }
    }

    fn forever(f: impl Fn(u32) -> Step + Send + Sync + 'static) -> Self {
        ScriptedModel {
            forever: Some(Box::new(f)),
            ..Self::new(vec![])
        }
    }
}

#[async_trait]
impl ChatModel for ScriptedModel {
    fn provider(&self) -> &'static str {
        "gemini"
    }
    fn model(&self) -> &str {
        "test-model"
    }
    async fn complete(
        &self,
        _system: &str,
        history: &[Message],
        _tools: &[ToolSpec],
    ) -> Result<ModelTurn, LlmError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) as u32;
        self.histories.lock().unwrap().push(history.to_vec());
        let step = self.steps.lock().unwrap().pop_front();
        let (delay, result) = match step {
            Some(s) => s,
            None => (self.forever.as_ref().expect("script exhausted"))(n),
        };
        tokio::time::sleep(delay).await;
        result
    }
}

fn calls(calls: &[(&str, &str, Value)]) -> Step {
    let tool_calls = calls
        .iter()
        .map(|(id, name, args)| ToolCall {
            id: Some(id.to_string()),
            name: name.to_string(),
            args: ToolArgs::Json(args.clone()),
        })
        .collect();
    turn(AssistantTurn {
        text: None,
        tool_calls,
        echo: None,
    })
}

fn text(t: &str) -> Step {
    turn(AssistantTurn {
        text: Some(t.into()),
        tool_calls: vec![],
        echo: None,
    })
}

fn turn(turn: AssistantTurn) -> Step {
    let usage = Usage {
        prompt_tokens: 100,
        output_tokens: 10,
    };
    (
        Duration::from_millis(500),
        Ok(ModelTurn {
            turn,
            usage,
            finish_reason: Some("STOP".into()),
        }),
    )
}

fn err(e: LlmError) -> Step {
    (Duration::from_millis(100), Err(e))
}

#[derive(Default)]
struct FakeTools {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    executed: Mutex<Vec<(String, Value)>>,
    stop_on_restart: bool,
}

#[async_trait]
impl ToolExecutor for FakeTools {
    fn specs(&self) -> Vec<ToolSpec> {
        [
            "list_webapp_status",
            "restart_container",
            "check_webapp_health",
        ]
        .iter()
        .map(|n| ToolSpec {
            name: n.to_string(),
            description: String::new(),
            parameters: json!({}),
        })
        .collect()
    }

    async fn call(&self, name: &str, args: &Value) -> ToolOutcome {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // The first replica takes longest, so completion order differs from call order.
        let ms = if args["name"] == "w-1" { 300 } else { 100 };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.executed
            .lock()
            .unwrap()
            .push((name.to_string(), args.clone()));
        match name {
            "restart_container" if self.stop_on_restart => {
                ToolOutcome::Stop("restart budget spent".into())
            }
            "restart_container" => ToolOutcome::Ok(json!({"restarted": args["name"]})),
            "list_webapp_status" => ToolOutcome::Ok(json!([{"name": "w-1", "status": "exited"}])),
            "check_webapp_health" => ToolOutcome::Ok(json!({"healthy": true})),
            other => ToolOutcome::Error(format!("unknown tool {other}")),
        }
    }
}

fn budget() -> Budget {
    Budget {
        max_turns: 6,
        deadline: Duration::from_secs(60),
        ..Budget::default()
    }
}

#[tokio::test(start_paused = true)]
async fn parallel_calls_run_concurrently_and_are_answered_in_order() {
    let model = ScriptedModel::new(vec![
        calls(&[
            ("a", "restart_container", json!({"name": "w-1"})),
            ("b", "restart_container", json!({"name": "w-2"})),
        ]),
        text("Restarted w-1 and w-2; all healthy."),
    ]);
    let tools = FakeTools::default();
    let metrics = Metrics::new(&[], &["gemini"], &["restart_container"]);
    let report = run(&model, &tools, "sys", "heal", &budget(), Some(&metrics)).await;

    assert_eq!(report.end, LoopEnd::Completed);
    assert_eq!(
        report.summary.as_deref(),
        Some("Restarted w-1 and w-2; all healthy.")
    );
    assert_eq!(
        tools.max_in_flight.load(Ordering::SeqCst),
        2,
        "calls must overlap"
    );
    // w-2 finished first, yet the answers follow the call order.
    assert_eq!(tools.executed.lock().unwrap()[0].1, json!({"name": "w-2"}));
    let histories = model.histories.lock().unwrap();
    let Message::ToolResults(results) = &histories[1][2] else {
        panic!("{:?}", histories[1])
    };
    let ids: Vec<_> = results
        .iter()
        .map(|r| r.call_id.as_deref().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(results[0].result, Ok(json!({"restarted": "w-1"})));

    assert_eq!((report.turns, report.model_requests), (2, 2));
    assert_eq!((report.prompt_tokens, report.output_tokens), (200, 20));
    assert_eq!(report.tool_calls.len(), 2);
    assert!(report.tool_calls.iter().all(|c| c.ok && c.turn == 1));
    assert_eq!(report.model_latency, Duration::from_millis(1000));
    // 300 ms of tools ran concurrently, outside the model.
    assert_eq!(report.added_time(), Duration::from_millis(300));

    let text = metrics.render();
    assert!(
        text.contains(r#"healing_llm_requests_total{outcome="ok",provider="gemini"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"healing_llm_tokens_total{kind="prompt",provider="gemini"} 200"#));
    // Calls that reach the tools are counted by the tools (each call once); the loop does not.
    assert!(
        text.contains(r#"healing_tool_calls_total{outcome="ok",tool="restart_container"} 0"#),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn turn_budget_ends_a_model_that_never_stops() {
    let model = ScriptedModel::forever(|n| {
        calls(&[("x", "restart_container", json!({"name": format!("w-{n}")}))])
    });
    let tools = FakeTools::default();
    let report = run(
        &model,
        &tools,
        "",
        "",
        &Budget {
            max_turns: 3,
            ..budget()
        },
        None,
    )
    .await;
    assert_eq!(report.end, LoopEnd::TurnBudget);
    assert_eq!(report.turns, 3);
    assert_eq!(report.tool_calls.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn deadline_cuts_a_slow_model() {
    let model = ScriptedModel::forever(|n| {
        let (_, r) = calls(&[("x", "list_webapp_status", json!({"n": n}))]);
        (Duration::from_secs(10), r)
    });
    let tools = FakeTools::default();
    let started = Instant::now();
    let report = run(
        &model,
        &tools,
        "",
        "",
        &Budget {
            deadline: Duration::from_secs(15),
            ..budget()
        },
        None,
    )
    .await;
    assert_eq!(report.end, LoopEnd::Deadline);
    assert_eq!(report.turns, 1);
    assert_eq!(started.elapsed(), Duration::from_secs(15));
}

#[tokio::test(start_paused = true)]
async fn repeated_identical_call_stops_the_loop() {
    let model = ScriptedModel::forever(|_| calls(&[("x", "list_webapp_status", json!({}))]));
    let tools = FakeTools::default();
    let report = run(&model, &tools, "", "", &budget(), None).await;
    assert_eq!(
        report.end,
        LoopEnd::RepeatedCall {
            tool: "list_webapp_status".into()
        }
    );
    assert_eq!(report.turns, 3);
    assert_eq!(
        tools.executed.lock().unwrap().len(),
        2,
        "the repeated call is not executed"
    );
}

#[tokio::test(start_paused = true)]
async fn stop_outcome_ends_the_run() {
    let model = ScriptedModel::new(vec![
        calls(&[
            ("a", "restart_container", json!({"name": "w-1"})),
            ("b", "check_webapp_health", json!({})),
        ]),
        text("unreachable"),
    ]);
    let tools = FakeTools {
        stop_on_restart: true,
        ..FakeTools::default()
    };
    let report = run(&model, &tools, "", "", &budget(), None).await;
    assert_eq!(
        report.end,
        LoopEnd::Stopped {
            reason: "restart budget spent".into()
        }
    );
    assert_eq!(
        report.tool_calls.len(),
        2,
        "the other calls of the turn are still recorded"
    );
    assert_eq!(
        report.tool_calls[0].result,
        json!({"stop": "restart budget spent"})
    );
    assert_eq!(model.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_waits_the_server_delay_then_succeeds() {
    let model = ScriptedModel::new(vec![
        err(LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
        }),
        text("done"),
    ]);
    let started = Instant::now();
    let report = run(&model, &FakeTools::default(), "", "", &budget(), None).await;
    assert_eq!(report.end, LoopEnd::Completed);
    assert_eq!((report.turns, report.model_requests), (1, 2));
    assert_eq!(started.elapsed(), Duration::from_millis(100 + 7_000 + 500));
    assert_eq!(report.model_errors.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_longer_than_allowed_fails_at_once() {
    let model = ScriptedModel::new(vec![err(LlmError::RateLimited {
        retry_after: Some(Duration::from_secs(3600)),
    })]);
    let report = run(&model, &FakeTools::default(), "", "", &budget(), None).await;
    assert!(
        matches!(&report.end, LoopEnd::Failed { reason } if reason.contains("longer than")),
        "{:?}",
        report.end
    );
    assert_eq!(report.model_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn server_errors_retry_with_backoff_until_attempts_run_out() {
    let model = ScriptedModel::forever(|_| {
        err(LlmError::Server {
            status: 503,
            message: "overloaded".into(),
        })
    });
    let metrics = Metrics::new(&[], &["gemini"], &[]);
    let started = Instant::now();
    let report = run(
        &model,
        &FakeTools::default(),
        "",
        "",
        &Budget {
            max_attempts: 3,
            ..budget()
        },
        Some(&metrics),
    )
    .await;
    assert!(
        matches!(&report.end, LoopEnd::Failed { reason } if reason.contains("503") && reason.contains("3 attempts")),
        "{:?}",
        report.end
    );
    assert_eq!(report.model_requests, 3);
    // 3 × 100 ms requests + 500 ms + 1 s backoff.
    assert_eq!(started.elapsed(), Duration::from_millis(1_800));
    assert!(metrics
        .render()
        .contains(r#"healing_llm_requests_total{outcome="server_error",provider="gemini"} 3"#));
}

#[tokio::test(start_paused = true)]
async fn server_errors_stop_when_the_deadline_leaves_no_room() {
    let model = ScriptedModel::forever(|_| err(LlmError::Timeout));
    let b = Budget {
        deadline: Duration::from_secs(2),
        max_attempts: 10,
        ..budget()
    };
    let report = run(&model, &FakeTools::default(), "", "", &b, None).await;
    assert!(
        matches!(&report.end, LoopEnd::Failed { reason } if reason.contains("no time left")),
        "{:?}",
        report.end
    );
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_not_retried() {
    let model = ScriptedModel::new(vec![err(LlmError::Client {
        status: 400,
        message: "bad".into(),
    })]);
    let report = run(&model, &FakeTools::default(), "", "", &budget(), None).await;
    assert!(matches!(report.end, LoopEnd::Failed { .. }));
    assert_eq!(report.model_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn malformed_arguments_are_answered_as_an_error_and_the_model_continues() {
    let bad = ToolCall {
        id: Some("c1".into()),
        name: "restart_container".into(),
        args: ToolArgs::parse("{\"name\": \"w-1\""),
    };
    let model = ScriptedModel::new(vec![
        turn(AssistantTurn {
            text: None,
            tool_calls: vec![bad],
            echo: None,
        }),
        calls(&[("c2", "restart_container", json!({"name": "w-1"}))]),
        text("fixed"),
    ]);
    let tools = FakeTools::default();
    let report = run(&model, &tools, "", "", &budget(), None).await;
    assert_eq!(report.end, LoopEnd::Completed);
    assert_eq!(
        tools.executed.lock().unwrap().len(),
        1,
        "malformed call never reaches the tool"
    );
    assert!(!report.tool_calls[0].ok);
    assert_eq!(report.tool_calls[0].args, json!("{\"name\": \"w-1\""));
    let histories = model.histories.lock().unwrap();
    let Message::ToolResults(r) = &histories[1][2] else {
        panic!()
    };
    assert!(matches!(&r[0].result, Err(e) if e.contains("not valid JSON")));
    assert!(report.tool_calls[1].ok);
}

#[test]
fn report_serialises_for_incidents() {
    let report = LoopReport {
        provider: "gemini".into(),
        model: "m".into(),
        turns: 1,
        model_requests: 1,
        prompt_tokens: 1,
        output_tokens: 1,
        tool_calls: vec![],
        summary: None,
        end: LoopEnd::Failed { reason: "x".into() },
        model_errors: vec![],
        model_latency: Duration::from_millis(1500),
        elapsed: Duration::from_secs(2),
    };
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["end"], json!({"kind": "failed", "reason": "x"}));
    assert_eq!(v["model_latency_ms"], 1500);
}
