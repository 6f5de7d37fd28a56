//! The real providers and loop against the fake servers, over HTTP.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fake_llm::{call, call_raw, Brain, FakeGemini, FakeOpenAi, GeminiOptions, Script};
use serde_json::{json, Value};
use support::providers::{gemini, gemini_config, openai};
use webhook_receiver::llm::gemini::{Gemini, GeminiConfig, ThinkingLevel};
use webhook_receiver::llm::{
    prompts, run, Budget, ChatModel, LlmError, LoopEnd, Message, Secret, ToolExecutor, ToolOutcome,
    ToolSpec,
};

/// Tools over a pretend service: replica 2 is down until restarted.
#[derive(Default)]
struct Tools {
    calls: Mutex<Vec<(String, Value)>>,
}

#[async_trait]
impl ToolExecutor for Tools {
    fn specs(&self) -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "list_webapp_status".into(),
                description: "Status of every replica of the service".into(),
                parameters: json!({"type": "object", "properties": {}}),
            },
            ToolSpec {
                name: "restart_container".into(),
                description: "Restart one replica by container name".into(),
                parameters: json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": false}),
            },
            ToolSpec {
                name: "check_webapp_health".into(),
                description: "Probe the service through nginx".into(),
                parameters: json!({"type": "object", "properties": {}}),
            },
        ]
    }

    async fn call(&self, name: &str, args: &Value) -> ToolOutcome {
        self.calls
            .lock()
            .unwrap()
            .push((name.to_string(), args.clone()));
        match name {
            "list_webapp_status" => ToolOutcome::Ok(json!({"replicas": [
                {"name": "app-webapp-1", "status": "running", "health": "healthy"},
                {"name": "app-webapp-2", "status": "exited", "exit_code": 137, "oom_killed": true}
            ]})),
            "restart_container" => match args.get("name").and_then(Value::as_str) {
                Some(n) if n.starts_with("app-webapp-") => ToolOutcome::Ok(json!({"restarted": n})),
                _ => ToolOutcome::Error("name must be a replica of webapp".into()),
            },
            "check_webapp_health" => ToolOutcome::Ok(json!({"healthy": true, "status": 200})),
            other => ToolOutcome::Error(format!("unknown tool {other}")),
        }
    }
}

impl Tools {
    fn restarted(&self) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == "restart_container")
            .map(|(_, a)| a.clone())
            .collect()
    }
}

fn gemini_with(url: &str, model: &str, thinking_level: ThinkingLevel) -> Gemini {
    Gemini::new(GeminiConfig {
        model: model.into(),
        thinking_level,
        ..gemini_config(url)
    })
    .unwrap()
}

/// The thinking level goes out as `generationConfig.thinkingConfig.thinkingLevel` to Gemini 3
/// models, never to 2.x, and never with the sampling parameters the 3.x models deprecated; the
/// strict fake refuses what the API refuses (a level the model does not take).
#[tokio::test]
async fn gemini_sends_the_thinking_level_where_the_model_takes_one() {
    let hello = [Message::User("hello".into())];
    let fake = FakeGemini::start(Script::new().text("a").text("b").text("c")).await;
    gemini_with(fake.url(), "gemini-3.8-flash", ThinkingLevel::Low)
        .complete("sys", &hello, &[])
        .await
        .unwrap();
    gemini_with(fake.url(), "gemini-2.5-flash", ThinkingLevel::High)
        .complete("sys", &hello, &[])
        .await
        .unwrap();
    gemini_with(fake.url(), "gemini-3.8-flash", ThinkingLevel::ModelDefault)
        .complete("sys", &hello, &[])
        .await
        .unwrap();
    let sent: Vec<Value> = fake.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(
        sent[0]["generationConfig"],
        json!({"thinkingConfig": {"thinkingLevel": "low"}})
    );
    for body in &sent {
        let config = body.get("generationConfig").cloned().unwrap_or(json!({}));
        for deprecated in ["temperature", "topP", "topK"] {
            assert!(config.get(deprecated).is_none(), "{body}");
        }
    }
    assert!(
        sent[1].get("generationConfig").is_none(),
        "2.x takes no level"
    );
    assert!(
        sent[2].get("generationConfig").is_none(),
        "default: none sent"
    );

    let fake = FakeGemini::start(Script::new().text("unused")).await;
    let e = gemini_with(fake.url(), "gemini-3.8-flash", ThinkingLevel::Minimal)
        .complete("sys", &hello, &[])
        .await
        .unwrap_err();
    match e {
        LlmError::Client {
            status: 400,
            message,
        } => {
            assert!(message.contains("not supported"), "{message}")
        }
        other => panic!("expected a 400, got {other:?}"),
    }
}

fn budget() -> Budget {
    Budget {
        deadline: Duration::from_secs(20),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..Budget::default()
    }
}

async fn heal(model: &dyn ChatModel, tools: &Tools) -> webhook_receiver::llm::LoopReport {
    let system = prompts::system_prompt("webapp");
    let user = prompts::user_prompt(
        "webapp",
        "alert",
        "WebappReplicasDown: 2 of 3 replicas healthy",
    );
    run(model, tools, &system, &user, &budget(), None).await
}

#[tokio::test]
async fn gemini_parallel_calls_round_trip_with_signatures() {
    let fake = FakeGemini::start(
        Script::new()
            .call("list_webapp_status", json!({}))
            .calls(vec![
                call("restart_container", json!({"name": "app-webapp-2"})),
                call("restart_container", json!({"name": "db-1"})),
            ])
            .call("check_webapp_health", json!({}))
            .text("Replica 2 was OOM-killed; restarted it and the service is healthy."),
    )
    .await;
    let tools = Tools::default();
    let report = heal(&gemini(fake.url()), &tools).await;

    assert_eq!(report.end, LoopEnd::Completed, "{report:#?}");
    assert_eq!(report.turns, 4);
    assert_eq!(report.tool_calls.len(), 4);
    assert!(report.prompt_tokens > 0 && report.output_tokens > 0);
    assert!(report.summary.unwrap().contains("OOM-killed"));

    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests
        .iter()
        .all(|r| r.status == 200 && r.query.is_none()));
    assert!(requests
        .iter()
        .all(|r| r.api_key.as_deref() == Some(FakeGemini::API_KEY)));
    assert_eq!(
        requests[0].path,
        "/v1beta/models/gemini-3.5-flash:generateContent"
    );
    // The third request answers the two parallel calls in one content, in order.
    let answer = &requests[2].body["contents"][4];
    assert_eq!(answer["role"], "user");
    assert_eq!(answer["parts"].as_array().unwrap().len(), 2);
    assert_eq!(
        answer["parts"][1]["functionResponse"]["response"],
        json!({"error": "name must be a replica of webapp"})
    );
    // The model's turn came back exactly as sent.
    assert_eq!(
        requests[2].body["contents"][3],
        requests[1].response["candidates"][0]["content"]
    );
}

#[tokio::test]
async fn gemini_rejects_a_dropped_or_changed_thought_signature() {
    let fake = FakeGemini::start(
        Script::new()
            .call("list_webapp_status", json!({}))
            .repeat_last(),
    )
    .await;
    let model = gemini(fake.url());
    let tools = Tools::default().specs();
    let mut history = vec![Message::User("heal".into())];
    let turn = model.complete("sys", &history, &tools).await.unwrap();
    let raw: Value = serde_json::from_str(turn.turn.echo.as_ref().unwrap().get()).unwrap();
    assert!(raw["parts"][0]["thoughtSignature"].is_string());

    let answer = Message::ToolResults(vec![webhook_receiver::llm::ToolResult {
        call_id: None,
        name: "list_webapp_status".into(),
        result: Ok(json!([])),
    }]);
    for (edit, expected) in [
        (None, "missing a thought_signature"),
        (Some("CiQBforged"), "Corrupted thought signature."),
    ] {
        let mut edited = raw.clone();
        match edit {
            None => edited["parts"][0]
                .as_object_mut()
                .unwrap()
                .remove("thoughtSignature"),
            Some(sig) => edited["parts"][0]
                .as_object_mut()
                .unwrap()
                .insert("thoughtSignature".into(), json!(sig)),
        };
        let mut forged = turn.turn.clone();
        forged.echo = Some(serde_json::value::RawValue::from_string(edited.to_string()).unwrap());
        history.truncate(1);
        history.push(Message::Assistant(forged));
        history.push(answer.clone());
        match model.complete("sys", &history, &tools).await {
            Err(LlmError::Client {
                status: 400,
                message,
            }) => assert!(message.contains(expected), "{message}"),
            other => panic!("expected a 400, got {other:?}"),
        }
    }
    // Unchanged, the same conversation is accepted.
    history.truncate(1);
    history.push(Message::Assistant(turn.turn));
    history.push(answer);
    model.complete("sys", &history, &tools).await.unwrap();
}

#[tokio::test]
async fn gemini_rate_limit_then_success() {
    let fake = FakeGemini::start(
        Script::new()
            .rate_limited(Some(Duration::from_millis(700)))
            .text("nothing to do"),
    )
    .await;
    let started = Instant::now();
    let report = heal(&gemini(fake.url()), &Tools::default()).await;
    assert_eq!(report.end, LoopEnd::Completed);
    assert_eq!((report.turns, report.model_requests), (1, 2));
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(
        fake.requests()[0].response["error"]["details"][1]["retryDelay"],
        "0.7s"
    );
}

#[tokio::test]
async fn gemini_server_errors_until_the_budget_ends() {
    let fake = FakeGemini::start(Script::new().server_error(503).repeat_last()).await;
    let model = gemini(fake.url());
    let b = Budget {
        max_attempts: 3,
        ..budget()
    };
    let report = run(&model, &Tools::default(), "sys", "heal", &b, None).await;
    assert!(
        matches!(&report.end, LoopEnd::Failed { reason } if reason.contains("503") && reason.contains("UNAVAILABLE")),
        "{:?}",
        report.end
    );
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn gemini_wrong_key_is_a_client_error_without_the_key() {
    let fake = FakeGemini::start(Script::new().text("x")).await;
    let model = Gemini::new(GeminiConfig {
        api_key: Secret::new("AIzaWRONG-KEY-123").unwrap(),
        ..gemini_config(fake.url())
    })
    .unwrap();
    let err = model
        .complete("", &[Message::User("hi".into())], &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Client { status: 400, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("AIzaWRONG"));
    assert_eq!(
        fake.requests()[0].api_key.as_deref(),
        Some("AIzaWRONG-KEY-123")
    );
}

#[tokio::test]
async fn gemini_healer_brain_heals_with_call_ids() {
    let options = GeminiOptions {
        call_ids: true,
        ..GeminiOptions::default()
    };
    let fake = FakeGemini::start_with(Brain::Healer, options).await;
    let tools = Tools::default();
    let report = heal(&gemini(fake.url()), &tools).await;
    assert_eq!(report.end, LoopEnd::Completed, "{report:#?}");
    assert_eq!(report.turns, 4, "list, restart, check, summary");
    assert_eq!(tools.restarted(), vec![json!({"name": "app-webapp-2"})]);
    assert!(report.summary.unwrap().contains("app-webapp-2"));
    let ids = &fake.requests()[2].body["contents"][4]["parts"][0]["functionResponse"]["id"];
    assert!(ids.as_str().unwrap().starts_with("fc-"));
}

#[tokio::test]
async fn openai_malformed_arguments_then_the_model_continues() {
    let fake = FakeOpenAi::start(
        Script::new()
            .calls(vec![call_raw(
                "restart_container",
                "{\"name\": \"app-webapp-2\"",
            )])
            .call("restart_container", json!({"name": "app-webapp-2"}))
            .text("Restarted app-webapp-2."),
    )
    .await;
    let tools = Tools::default();
    let report = heal(&openai(fake.url()), &tools).await;
    assert_eq!(report.end, LoopEnd::Completed, "{report:#?}");
    assert_eq!(tools.restarted(), vec![json!({"name": "app-webapp-2"})]);
    assert!(!report.tool_calls[0].ok);
    let requests = fake.requests();
    assert!(requests.iter().all(|r| r.status == 200), "{requests:#?}");
    let second = &requests[1].body["messages"];
    assert_eq!(
        second[2]["tool_calls"][0]["function"]["arguments"],
        "{\"name\": \"app-webapp-2\""
    );
    assert_eq!(second[3]["role"], "tool");
    assert!(second[3]["content"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    assert_eq!(
        report.prompt_tokens,
        requests
            .iter()
            .map(|r| r.response["usage"]["prompt_tokens"].as_u64().unwrap())
            .sum::<u64>()
    );
}

#[tokio::test]
async fn openai_rate_limit_then_success_and_4xx_without_retry() {
    let fake = FakeOpenAi::start(
        Script::new()
            .rate_limited(Some(Duration::from_millis(300)))
            .text("ok")
            .error(400, "bad request"),
    )
    .await;
    let model = openai(fake.url());
    let report = run(&model, &Tools::default(), "sys", "heal", &budget(), None).await;
    assert_eq!(report.end, LoopEnd::Completed, "{report:#?}");
    assert_eq!(report.model_requests, 2, "{report:#?}");
    let report = run(&model, &Tools::default(), "sys", "heal", &budget(), None).await;
    assert!(
        matches!(&report.end, LoopEnd::Failed { reason } if reason.contains("400")),
        "{:?}",
        report.end
    );
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn openai_server_errors_are_retried_by_the_loop_only() {
    let fake = FakeOpenAi::start(Script::new().server_error(500).repeat_last()).await;
    let b = Budget {
        max_attempts: 2,
        ..budget()
    };
    let report = run(
        &openai(fake.url()),
        &Tools::default(),
        "sys",
        "heal",
        &b,
        None,
    )
    .await;
    assert!(
        matches!(&report.end, LoopEnd::Failed { reason } if reason.contains("500")),
        "{:?}",
        report.end
    );
    // One HTTP request per attempt: async-openai's own retry layer is not in the way.
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(report.model_requests, 2);
}
