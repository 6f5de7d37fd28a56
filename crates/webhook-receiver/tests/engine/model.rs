//! The model drives the same tools: two round trips for a plain crash, its cap, the fallback.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use test_support::Op;
use webhook_receiver::agent::LlmStrategy;
use webhook_receiver::incidents::{FailureClass, Mode, Outcome};
use webhook_receiver::llm::types::{AssistantTurn, ToolArgs, ToolCall, Usage};
use webhook_receiver::llm::{Budget, ChatModel, LlmError, Message, ModelTurn, ToolSpec};
use webhook_receiver::runtime::RuntimeError;

use super::*;

pub type Reply =
    Box<dyn Fn(usize, &[Message]) -> (Duration, Result<AssistantTurn, LlmError>) + Send + Sync>;

/// A model in-process: `reply(turn, history)` answers each request.
struct FnModel {
    reply: Reply,
    turns: AtomicUsize,
}

#[async_trait]
impl ChatModel for FnModel {
    fn provider(&self) -> &'static str {
        "gemini"
    }
    fn model(&self) -> &str {
        "test"
    }
    async fn complete(
        &self,
        _system: &str,
        history: &[Message],
        _tools: &[ToolSpec],
    ) -> Result<ModelTurn, LlmError> {
        let n = self.turns.fetch_add(1, Ordering::SeqCst);
        let (delay, turn) = (self.reply)(n, history);
        tokio::time::sleep(delay).await;
        Ok(ModelTurn {
            turn: turn?,
            usage: Usage {
                prompt_tokens: 100,
                output_tokens: 10,
            },
            finish_reason: Some("STOP".into()),
        })
    }
}

fn llm(reply: Reply, metrics: &Metrics) -> Arc<dyn Strategy> {
    Arc::new(LlmStrategy {
        model: Arc::new(FnModel {
            reply,
            turns: AtomicUsize::new(0),
        }),
        budget: Budget {
            deadline: Duration::from_secs(60),
            ..Budget::default()
        },
        metrics: metrics.clone(),
    })
}

/// One turn asking to restart each of `names`, in parallel (call ids `c0`, `c1`, ...).
pub fn restart_calls(names: &[impl AsRef<str>]) -> AssistantTurn {
    AssistantTurn {
        text: None,
        tool_calls: names
            .iter()
            .enumerate()
            .map(|(i, n)| ToolCall {
                id: Some(format!("c{i}")),
                name: "restart_container".into(),
                args: ToolArgs::Json(json!({ "name": n.as_ref() })),
            })
            .collect(),
        echo: None,
    }
}

pub fn says(text: &str) -> AssistantTurn {
    AssistantTurn {
        text: Some(text.into()),
        tool_calls: vec![],
        echo: None,
    }
}

/// The names the first user message's diagnosis marks as needing an action in this run.
pub fn to_heal(history: &[Message]) -> Vec<String> {
    let Some(Message::User(text)) = history.first() else {
        return vec![];
    };
    let start = text.find("```json\n").map(|i| i + 8).unwrap_or(0);
    let end = start + text[start..].find("\n```").unwrap_or(0);
    let v: Value = serde_json::from_str(&text[start..end]).unwrap_or_default();
    v["diagnosis"]["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["allowed_action"] != "none")
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect()
}

pub async fn harness_with_model(reply: Reply) -> Harness {
    let metrics = Metrics::new(
        &["webapp".to_string()],
        &["gemini"],
        &webhook_receiver::tools::tool_names(),
    );
    harness(Opts {
        strategy: Some(llm(reply, &metrics)),
        ..Opts::default()
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn the_model_heals_a_plain_crash_in_two_round_trips_from_the_first_turn_diagnosis() {
    let h = harness_with_model(Box::new(|turn, history| {
        let names = to_heal(history);
        match turn {
            0 => (Duration::from_millis(500), Ok(restart_calls(&names))),
            _ => (
                Duration::from_millis(500),
                Ok(says("restarted the dead replica; verified")),
            ),
        }
    }))
    .await;
    h.rt.exit(&h.names[2], 137, true);
    h.trigger_alert();
    h.settle().await;
    let i = &h.incidents()[0];
    assert_eq!(
        (i.outcome, i.mode, i.class),
        (Outcome::Healed, Mode::Llm, FailureClass::OomKilled)
    );
    assert_eq!(
        i.llm.as_ref().unwrap().turns,
        2,
        "restart, then the summary"
    );
    assert_eq!(h.rt.actions_on(&h.names[2]), 1);
    let restart = i
        .timeline
        .iter()
        .find(|a| a.action == "restart_container")
        .unwrap();
    assert_eq!(
        restart.detail["verification"]["serving"], true,
        "{:?}",
        restart.detail
    );
}

#[tokio::test(start_paused = true)]
async fn a_model_that_spends_its_cap_cannot_block_the_fallback() {
    // Wrong names, again and again, in parallel: the model's own cap stops it; the runbook has
    // its own and heals.
    let h = harness_with_model(Box::new(|_, _| {
        let wrong: Vec<String> = (0..12).map(|i| format!("webapp-{i}")).collect();
        // (The same calls every turn: the request cap ends it in the first turn, before the
        // loop's own repeated-call check could.)
        (Duration::from_millis(200), Ok(restart_calls(&wrong)))
    }))
    .await;
    h.rt.kill(&h.names[0]);
    h.trigger_alert();
    h.settle().await;
    let i = &h.incidents()[0];
    assert_eq!((i.outcome, i.mode), (Outcome::Healed, Mode::Fallback));
    assert!(
        i.fallback_reason
            .as_deref()
            .unwrap()
            .contains("stopped by policy"),
        "{:?}",
        i.fallback_reason
    );
    assert_eq!(h.rt.actions_on(&h.names[0]), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_docker_start_by_the_model_is_finished_by_the_fallback() {
    let h = harness_with_model(Box::new(|turn, history| match turn {
        0 => {
            let names = to_heal(history);
            (Duration::from_millis(300), Ok(restart_calls(&names)))
        }
        // A claim without acting: "all good".
        _ => (
            Duration::from_millis(300),
            Ok(says("All replicas are healthy now.")),
        ),
    }))
    .await;
    let r = &h.names[1];
    h.rt.kill(r);
    h.rt.fail_next(
        Op::Start,
        r,
        RuntimeError::Unreachable("docker call timed out".into()),
    );
    h.trigger_alert();
    h.settle().await;
    let i = &h.incidents()[0];
    assert_eq!(
        (i.outcome, i.mode),
        (Outcome::Healed, Mode::Fallback),
        "{}",
        i.summary
    );
    assert!(i.fallback_reason.as_deref().unwrap().contains("still down"));
    assert_eq!(h.rt.actions_on(r), 1, "one start that Docker confirmed");
    let by: Vec<(&str, &str)> = i
        .timeline
        .iter()
        .filter(|a| a.action == "restart_container")
        .map(|a| (a.by.as_str(), a.result.as_str()))
        .collect();
    assert_eq!(by, [("llm", "error"), ("runbook", "ok")]);
}

#[tokio::test(start_paused = true)]
async fn a_second_death_is_not_stuck_behind_a_slow_model() {
    let h = harness_with_model(Box::new(|turn, history| {
        let names = to_heal(history);
        // The first conversation is slow; later ones answer at once.
        let slow = Duration::from_secs(if names.iter().any(|n| n.ends_with("-1")) {
            20
        } else {
            0
        });
        match turn % 2 {
            0 => (slow, Ok(restart_calls(&names))),
            _ => (Duration::ZERO, Ok(says("done"))),
        }
    }))
    .await;
    h.rt.kill(&h.names[0]);
    h.trigger_alert();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rt.kill(&h.names[1]);
    h.trigger_alert();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        h.rt.serving(&h.names[1]),
        "the second replica is healed while the first run still talks"
    );
    assert!(!h.rt.serving(&h.names[0]));
    h.settle().await;
    assert!(h.rt.serving(&h.names[0]));
    assert_eq!(h.outcomes(), [Outcome::Healed, Outcome::Healed]);
    for n in &h.names[..2] {
        assert_eq!(h.rt.actions_on(n), 1, "{n}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_alert_that_arrives_while_a_run_holds_the_replica_joins_its_incident() {
    // The death event starts a run whose model is slow; the alert about the same death
    // arrives meanwhile (Alertmanager is always later than Docker's event).
    let h = harness_with_model(Box::new(|turn, history| {
        let names = to_heal(history);
        match turn % 2 {
            0 => (Duration::from_secs(5), Ok(restart_calls(&names))),
            _ => (Duration::ZERO, Ok(says("done"))),
        }
    }))
    .await;
    h.rt.kill(&h.names[0]);
    let now = h.engine.context().clock.now();
    assert!(h.engine.trigger(
        "webapp",
        TriggerRecord {
            kind: TriggerKind::Event,
            name: "die".into(),
            at: now,
            container: Some(h.names[0].clone()),
            summary: None,
        }
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut late = h.alert();
    late.summary = Some("1 webapp replica(s) down; the text an operator wrote".into());
    assert!(h.engine.trigger("webapp", late));
    h.settle().await;
    let incidents = h.incidents();
    assert_eq!(h.outcomes(), [Outcome::Healed], "{incidents:#?}");
    let kinds: Vec<(TriggerKind, Option<&str>)> = incidents[0]
        .triggers
        .iter()
        .map(|t| (t.kind, t.summary.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (TriggerKind::Event, None),
            (
                TriggerKind::Alert,
                Some("1 webapp replica(s) down; the text an operator wrote")
            )
        ]
    );
    assert_eq!(h.rt.actions_on(&h.names[0]), 1);
}
