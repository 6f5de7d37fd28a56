//! The controller against the deterministic in-memory runtime, in paused (virtual) time: every
//! behaviour here runs in milliseconds of real time and is the same on every run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{json, Value};

use super::*;
use crate::agent::LlmStrategy;
use crate::budget::{BudgetPolicy, RestartBudget};
use crate::clock::Clock;
use crate::history::{EscalationPolicy, History};
use crate::incidents::{
    ActionLevel, EscalationReason, FailureClass, Incident, IncidentStore, Mode, Outcome,
};
use crate::llm::types::{AssistantTurn, ToolArgs, ToolCall, Usage};
use crate::llm::{Budget, ChatModel, LlmError, Message, ModelTurn, ToolSpec};
use crate::runtime::memory::{Behaviour, MemoryRuntime, Op};
use crate::runtime::RuntimeError;

const P: &str = "p";

struct Harness {
    rt: Arc<MemoryRuntime>,
    engine: Engine,
    incidents: Arc<IncidentStore>,
    metrics: Metrics,
    names: Vec<String>,
}

struct Opts {
    strategy: Option<Arc<dyn Strategy>>,
    budget: u32,
    stable_after: Duration,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            strategy: None,
            budget: 5,
            stable_after: Duration::from_secs(10),
        }
    }
}

async fn harness(opts: Opts) -> Harness {
    let clock = Clock::tokio();
    let rt = Arc::new(MemoryRuntime::new(clock.clone()));
    let names: Vec<String> = (1..=3).map(|n| rt.add(P, "webapp", n)).collect();
    let metrics = Metrics::new(
        &["webapp".to_string()],
        &["gemini"],
        &crate::tools::tool_names(),
    );
    let ctx = Arc::new(Context {
        runtime: rt.clone(),
        prober: rt.clone(),
        budget: Arc::new(RestartBudget::load(
            BudgetPolicy {
                max_restarts: opts.budget,
                window: Duration::from_secs(600),
                backoff_base: Duration::from_secs(1),
                backoff_max: Duration::from_secs(30),
                stable_after: opts.stable_after,
            },
            None,
        )),
        history: Arc::new(History::new(EscalationPolicy {
            after: 3,
            window: Duration::from_secs(600),
            crash_on_start_tries: 2,
        })),
        metrics: metrics.clone(),
        clock,
        dry_run: false,
        stable_after: opts.stable_after,
        verify_timeout: Duration::from_secs(30),
        own: Default::default(),
        stops: Default::default(),
        outages: Default::default(),
    });
    let incidents = Arc::new(IncidentStore::open(None).await.unwrap());
    let engine = Engine::new(
        ctx,
        Scope::new(P, ["webapp".to_string()]),
        opts.strategy.unwrap_or_else(|| Arc::new(Runbook)),
        incidents.clone(),
        crate::notify::Notifier::disabled(metrics.clone()),
        metrics.clone(),
        EngineConfig::default(),
    );
    Harness {
        rt,
        engine,
        incidents,
        metrics,
        names,
    }
}

impl Harness {
    fn alert(&self) -> TriggerRecord {
        TriggerRecord {
            kind: TriggerKind::Alert,
            name: "WebappReplicaDown".into(),
            at: self.engine.context().clock.now(),
            container: None,
            summary: Some("1 webapp replica(s) down".into()),
        }
    }

    /// Labels every replica of the service with `healstack.action=<value>`.
    fn set_action_level(&self, value: &str) {
        for n in &self.names {
            self.rt.label(n, ActionLevel::LABEL, value);
        }
    }

    fn trigger_alert(&self) {
        assert!(self.engine.trigger("webapp", self.alert()));
    }

    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            self.engine.wait_idle(Duration::from_secs(600)).await,
            "runs did not finish"
        );
    }

    /// Newest last.
    fn incidents(&self) -> Vec<Incident> {
        let mut all = self.incidents.recent(1000);
        all.reverse();
        all
    }

    fn outcomes(&self) -> Vec<Outcome> {
        self.incidents().iter().map(|i| i.outcome).collect()
    }

    fn metric(&self, line: &str) -> bool {
        self.metrics.render().lines().any(|l| l == line)
    }

    fn follow_events(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(watch_events(self.engine.clone()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_triggers_is_one_run_and_one_start_per_dead_replica() {
    let h = harness(Opts::default()).await;
    for n in &h.names {
        h.rt.kill(n);
    }
    for _ in 0..200 {
        h.trigger_alert();
    }
    h.settle().await;
    for n in &h.names {
        assert_eq!(h.rt.actions_on(n), 1, "{n}");
        assert!(h.rt.serving(n), "{n}");
    }
    let incidents = h.incidents();
    assert_eq!(h.outcomes(), [Outcome::Healed]);
    assert_eq!(incidents[0].class, FailureClass::Killed);
    assert_eq!(incidents[0].triggers.len(), 1, "identical triggers merge");
    // The alert repeats on the now healthy service: recorded once, then de-duplicated.
    h.trigger_alert();
    h.settle().await;
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.outcomes(), [Outcome::Healed, Outcome::NoAction]);
    assert!(
        h.metric(r#"healing_deduplicated_total{service="webapp"} 1"#),
        "{}",
        h.metrics.render()
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_is_requeued_and_healed_by_the_retry() {
    let h = harness(Opts::default()).await;
    let r = &h.names[1];
    h.rt.kill(r);
    h.rt.fail_next(
        Op::Start,
        r,
        RuntimeError::Api("HTTP 500: driver failed".into()),
    );
    h.trigger_alert();
    // The retry comes from the requeue alone: no other trigger.
    h.settle().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.settle().await;
    assert_eq!(h.outcomes(), [Outcome::Failed, Outcome::Healed]);
    assert_eq!(h.rt.actions_on(r), 1, "the failed start is not an action");
    assert!(h.rt.serving(r));
    let first = &h.incidents()[0];
    assert!(first.summary.contains("requeued"), "{}", first.summary);
    assert_eq!(h.incidents()[1].trigger, TriggerKind::Requeue);
    assert!(h.metric(r#"healing_requeues_total{service="webapp"} 1"#));
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_run_is_caught_recorded_and_the_service_healed_later() {
    let h = harness(Opts::default()).await;
    let r = &h.names[0];
    h.rt.kill(r);
    h.rt.panic_next(Op::Start);
    h.trigger_alert();
    h.settle().await;
    assert!(!h.engine.busy(), "the slot is freed");
    assert!(h.metric(r#"healing_run_panics_total{service="webapp"} 1"#));
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.settle().await;
    let incidents = h.incidents();
    assert_eq!(h.outcomes(), [Outcome::Failed, Outcome::Healed]);
    assert!(
        incidents[0].summary.contains("internal error"),
        "{}",
        incidents[0].summary
    );
    assert!(h.rt.serving(r));
}

// ---- the model ------------------------------------------------------------------------------

type Reply =
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

fn restart_calls(names: &[&str]) -> AssistantTurn {
    AssistantTurn {
        text: None,
        tool_calls: names
            .iter()
            .enumerate()
            .map(|(i, n)| ToolCall {
                id: Some(format!("c{i}")),
                name: "restart_container".into(),
                args: ToolArgs::Json(json!({ "name": n })),
            })
            .collect(),
        echo: None,
    }
}

fn says(text: &str) -> AssistantTurn {
    AssistantTurn {
        text: Some(text.into()),
        tool_calls: vec![],
        echo: None,
    }
}

/// The names the first user message's diagnosis marks as needing an action in this run.
fn to_heal(history: &[Message]) -> Vec<String> {
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

async fn harness_with_model(reply: Reply) -> Harness {
    let metrics = Metrics::new(
        &["webapp".to_string()],
        &["gemini"],
        &crate::tools::tool_names(),
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
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        match turn {
            0 => (Duration::from_millis(500), Ok(restart_calls(&refs))),
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
        let refs: Vec<&str> = wrong.iter().map(String::as_str).collect();
        (Duration::from_millis(200), Ok(restart_calls(&refs)))
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
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            (Duration::from_millis(300), Ok(restart_calls(&refs)))
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
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // The first conversation is slow; later ones answer at once.
        let slow = Duration::from_secs(if names.iter().any(|n| n.ends_with("-1")) {
            20
        } else {
            0
        });
        match turn % 2 {
            0 => (slow, Ok(restart_calls(&refs))),
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

// ---- lifecycle ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn shutdown_during_a_run_leaves_an_interrupted_incident() {
    let h = harness(Opts::default()).await;
    h.rt.set_action_delay(Duration::from_secs(60));
    h.rt.kill(&h.names[0]);
    h.trigger_alert();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(h.engine.busy());
    assert!(
        !h.engine.shutdown(Duration::from_secs(5)).await,
        "the run was cut short"
    );
    let i = &h.incidents()[0];
    assert_eq!(i.outcome, Outcome::Interrupted);
    assert!(i.summary.contains("shut down"), "{}", i.summary);
    assert!(
        !h.engine.trigger("webapp", h.alert()) || !h.engine.busy(),
        "no new work after shutdown"
    );
}

#[tokio::test(start_paused = true)]
async fn mttr_counts_from_the_death_not_from_an_older_still_firing_alert() {
    let h = harness(Opts::default()).await;
    // The alert has been firing for ten minutes (another replica, long healed).
    let mut stale = h.alert();
    stale.at = h.engine.context().clock.now() - chrono::Duration::minutes(10);
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.rt.kill(&h.names[0]);
    assert!(h.engine.trigger("webapp", stale));
    h.settle().await;
    let i = &h.incidents()[0];
    assert_eq!(i.outcome, Outcome::Healed);
    let mttr = i.mttr_seconds.unwrap();
    assert!(
        mttr < 5.0,
        "MTTR {mttr}s: measured from the alert, not the death"
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_resets_only_after_a_stable_period() {
    // Dies 3 s after each start (healthy for 2 s): a crash loop under the 10 s stable period.
    let h = harness(Opts {
        budget: 3,
        ..Opts::default()
    })
    .await;
    let r = h.names[0].clone();
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        h.rt.kill(&r);
        h.trigger_alert();
        h.settle().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        outcomes.push(h.incidents().last().unwrap().outcome);
    }
    assert_eq!(
        h.rt.actions_on(&r),
        3,
        "the budget of 3 is spent: {outcomes:?}"
    );
    assert_eq!(h.incidents().last().unwrap().outcome, Outcome::GaveUp);
    assert_eq!(
        h.incidents()
            .last()
            .unwrap()
            .escalation
            .as_ref()
            .unwrap()
            .reason,
        EscalationReason::BudgetSpent
    );

    // The same, living 30 s healthy between deaths (OOM under load): never a crash loop.
    let h = harness(Opts {
        budget: 3,
        ..Opts::default()
    })
    .await;
    let r = h.names[0].clone();
    for _ in 0..5 {
        h.rt.exit(&r, 137, true);
        h.trigger_alert();
        h.settle().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    assert_eq!(h.rt.actions_on(&r), 5);
    assert!(
        h.outcomes().iter().all(|o| *o == Outcome::Healed),
        "{:?}",
        h.outcomes()
    );
    // ...but the third heal in the window is escalated as a recurrence, and notified.
    let escalated: Vec<_> = h
        .incidents()
        .into_iter()
        .filter(|i| i.escalation.is_some())
        .collect();
    assert_eq!(escalated.len(), 1);
    assert_eq!(
        escalated[0].escalation.as_ref().unwrap().reason,
        EscalationReason::Recurrence
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_on_start_is_tried_twice_then_given_up_once_and_left_alone() {
    let h = harness(Opts::default()).await;
    let r = h.names[2].clone();
    h.rt.set_behaviour(&r, Behaviour::CrashOnStart(1));
    h.rt.set_logs(
        &r,
        "starting\nerror: PORT must be a number, got \"notaport\"",
    );
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Created with a bad setting: it never served.
    h.rt.exit_after(&r, 1, false, Some(Duration::from_millis(100)));
    // Its die events keep coming; alerts repeat; the agent resyncs.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        h.trigger_alert();
        h.engine.reconcile_all(TriggerKind::Reconcile, "test");
    }
    h.settle().await;
    events.abort();
    assert_eq!(h.rt.actions_on(&r), 2, "two tries, then no restart loop");
    let gave_up: Vec<_> = h
        .incidents()
        .into_iter()
        .filter(|i| i.outcome == Outcome::GaveUp)
        .collect();
    assert_eq!(gave_up.len(), 1, "recorded once: {:?}", h.outcomes());
    let e = gave_up[0].escalation.as_ref().unwrap();
    assert_eq!(e.reason, EscalationReason::CrashOnStart);
    assert!(
        e.detail.contains("exit code 1") && e.detail.contains("PORT must be a number"),
        "{}",
        e.detail
    );
    assert_eq!(gave_up[0].class, FailureClass::CrashedOnStart);
    // An operator fixes it and resets: the agent tries again.
    h.rt.set_behaviour(&r, Behaviour::Serves);
    assert!(h.engine.reset(&r));
    h.settle().await;
    assert!(h.rt.serving(&r));
}

#[tokio::test(start_paused = true)]
async fn a_replica_stopped_on_purpose_is_left_alone_by_every_path_and_recorded_once() {
    let h = harness(Opts::default()).await;
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rt.stop(&h.names[1]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..3 {
        h.trigger_alert();
        h.settle().await;
        h.engine.reconcile_all(TriggerKind::Reconcile, "test");
        h.settle().await;
    }
    events.abort();
    assert_eq!(h.rt.actions_on(&h.names[1]), 0);
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1, "{:?}", h.outcomes());
    assert_eq!(
        (incidents[0].outcome, incidents[0].class),
        (Outcome::NoAction, FailureClass::StoppedOnPurpose)
    );
}

#[tokio::test(start_paused = true)]
async fn hung_replicas_are_unpaused_or_restarted_and_the_restart_die_is_not_a_new_failure() {
    let h = harness(Opts::default()).await;
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rt.pause(&h.names[0]);
    h.settle().await;
    assert!(h.rt.serving(&h.names[0]));
    assert_eq!(
        h.rt.actions(),
        vec![(Op::Unpause, h.names[0].clone(), h.rt.actions()[0].2)]
    );
    // Frozen: Docker still says healthy, only the agent's probe (and the resync) tells.
    h.rt.freeze(&h.names[1]);
    h.engine.reconcile_all(TriggerKind::Reconcile, "test");
    h.settle().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.settle().await;
    events.abort();
    assert!(h.rt.serving(&h.names[1]));
    assert_eq!(h.rt.actions_on(&h.names[1]), 1);
    let hung: Vec<_> = h
        .incidents()
        .into_iter()
        .map(|i| (i.outcome, i.class))
        .collect();
    assert_eq!(
        hung,
        [
            (Outcome::Healed, FailureClass::Hung),
            (Outcome::Healed, FailureClass::Hung)
        ],
        "the die event of the agent's own restart starts nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn deaths_while_the_event_stream_was_down_are_found_on_reconnect() {
    let h = harness(Opts::default()).await;
    let events = h.follow_events();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.settle().await;
    h.rt.end_event_streams();
    h.rt.kill(&h.names[2]); // nobody is listening
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.settle().await;
    events.abort();
    assert!(h.rt.serving(&h.names[2]));
    let i = h.incidents().pop().unwrap();
    assert_eq!(
        (i.outcome, i.trigger),
        (Outcome::Healed, TriggerKind::Reconcile)
    );
}

#[tokio::test(start_paused = true)]
async fn notify_level_diagnoses_and_never_acts() {
    let h = harness(Opts::default()).await;
    h.set_action_level("notify");
    h.rt.kill(&h.names[0]);
    h.trigger_alert();
    h.settle().await;
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.rt.actions_on(&h.names[0]), 0);
    assert_eq!(h.outcomes(), [Outcome::Notified]);
    assert_eq!(h.incidents()[0].action_level, ActionLevel::Notify);
}

#[tokio::test(start_paused = true)]
async fn off_level_leaves_the_service_alone_and_records_nothing() {
    let h = harness(Opts::default()).await;
    h.set_action_level("off");
    h.rt.kill(&h.names[0]);
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.rt.actions_on(&h.names[0]), 0);
    assert!(h.incidents().is_empty(), "{:?}", h.outcomes());
    // Turned back to auto, the next trigger heals it: `off` was the label, not a lost replica.
    h.set_action_level("auto");
    h.trigger_alert();
    h.settle().await;
    assert_eq!(h.rt.actions_on(&h.names[0]), 1);
    assert_eq!(h.outcomes(), [Outcome::Healed]);
}

#[tokio::test(start_paused = true)]
async fn the_service_url_failing_in_front_of_healthy_replicas_is_out_of_scope() {
    let h = harness(Opts::default()).await;
    h.rt.set_service_url(false);
    h.engine.reconcile_all(TriggerKind::Reconcile, "test");
    h.settle().await;
    h.engine.reconcile_all(TriggerKind::Reconcile, "test");
    h.settle().await;
    assert!(h.rt.actions().is_empty());
    let i = h.incidents();
    assert_eq!(i.len(), 1);
    assert_eq!(i[0].class, FailureClass::OutOfScope);
    assert!(i[0]
        .scope_note
        .as_deref()
        .unwrap()
        .contains("in front of the replicas"));
    let _ = Utc::now();
}
