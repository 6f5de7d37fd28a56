//! The controller against the deterministic in-memory runtime (crates/test-support), in paused
//! (virtual) time: every behaviour here runs in milliseconds of real time and is the same on
//! every run. One module per rule of docs/agent.md.

mod bounded;
mod claims;
mod floor;
mod healing;
mod model;
mod recycle;
mod stops;
mod supervision;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use test_support::MemoryRuntime;
use webhook_receiver::budget::{BudgetPolicy, RestartBudget};
use webhook_receiver::clock::Clock;
use webhook_receiver::context::Context;
use webhook_receiver::engine::{watch_events, Engine, EngineConfig, Runbook, Strategy};
use webhook_receiver::history::{EscalationPolicy, History};
use webhook_receiver::incidents::{
    ActionLevel, Incident, IncidentStore, Outcome, TriggerKind, TriggerRecord,
};
use webhook_receiver::ledger::Ledger;
use webhook_receiver::metrics::Metrics;
use webhook_receiver::notify::{Deliver, Notifier, NotifyFormat};
use webhook_receiver::scope::Scope;
use webhook_receiver::stops::StopLedger;

const P: &str = "p";

/// A notification receiver in-process: keeps what it gets; panics on demand.
#[derive(Default)]
pub struct Sink {
    pub bodies: Mutex<Vec<Value>>,
    pub panic_next: AtomicUsize,
}

#[async_trait]
impl Deliver for Sink {
    async fn deliver(&self, body: &Value) -> Result<(), String> {
        if self
            .panic_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("scripted panic in the notification receiver");
        }
        self.bodies.lock().unwrap().push(body.clone());
        Ok(())
    }
}

impl Sink {
    pub fn events(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["event"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

pub struct Harness {
    pub rt: Arc<MemoryRuntime>,
    pub engine: Engine,
    pub incidents: Arc<IncidentStore>,
    pub metrics: Metrics,
    pub names: Vec<String>,
    pub sink: Arc<Sink>,
    /// Set: the next reading of the clock panics (a seam for the resync loop).
    pub clock_panics: Arc<AtomicBool>,
}

pub struct Opts {
    pub strategy: Option<Arc<dyn Strategy>>,
    pub stable_after: Duration,
    pub replicas: u32,
    /// Where the stops seen are kept (`None`: in memory).
    pub stops: Option<std::path::PathBuf>,
    /// An existing runtime (a restarted agent in front of the same daemon).
    pub rt: Option<Arc<MemoryRuntime>>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            strategy: None,
            stable_after: Duration::from_secs(10),
            replicas: 3,
            stops: None,
            rt: None,
        }
    }
}

pub async fn harness(opts: Opts) -> Harness {
    // RUST_LOG=debug shows the engine's reasoning in a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    // A restarted agent in front of the same daemon keeps its time.
    let tokio_clock = opts.rt.as_ref().map_or_else(Clock::tokio, |rt| rt.clock());
    let clock_panics = Arc::new(AtomicBool::new(false));
    let clock = {
        let armed = clock_panics.clone();
        let base = tokio_clock.clone();
        Clock::from_fn(move || {
            if armed.swap(false, Ordering::SeqCst) {
                panic!("scripted panic reading the clock");
            }
            base.now()
        })
    };
    let (rt, names) = match opts.rt {
        Some(rt) => {
            let names = (1..=opts.replicas)
                .map(|n| format!("{P}-webapp-{n}"))
                .collect();
            (rt, names)
        }
        None => {
            let rt = Arc::new(MemoryRuntime::new(tokio_clock));
            let names: Vec<String> = (1..=opts.replicas)
                .map(|n| rt.add(P, "webapp", n))
                .collect();
            (rt, names)
        }
    };
    let metrics = Metrics::new(
        &["webapp".to_string()],
        &["gemini"],
        &webhook_receiver::tools::tool_names(),
    );
    let budget = Arc::new(RestartBudget::load(
        BudgetPolicy {
            window: Duration::from_secs(600),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(2),
            stable_after: opts.stable_after,
        },
        None,
    ));
    let history = History::new(EscalationPolicy {
        after: 3,
        window: Duration::from_secs(600),
        crash_on_start_tries: 2,
    });
    let stops = Arc::new(StopLedger::open(opts.stops, clock.now()).await);
    let ctx = Arc::new(Context {
        runtime: rt.clone(),
        prober: rt.clone(),
        ledger: Arc::new(Ledger::new(budget, history)),
        stops,
        metrics: metrics.clone(),
        clock,
        dry_run: false,
        stable_after: opts.stable_after,
        verify_timeout: Duration::from_secs(30),
    });
    let incidents = Arc::new(IncidentStore::open(None).await.unwrap());
    let sink = Arc::new(Sink::default());
    let engine = Engine::new(
        ctx,
        Scope::new(P, ["webapp".to_string()]),
        opts.strategy.unwrap_or_else(|| Arc::new(Runbook)),
        incidents.clone(),
        Notifier::spawn_with(sink.clone(), NotifyFormat::Json, metrics.clone()),
        metrics.clone(),
        EngineConfig::default(),
    );
    Harness {
        rt,
        engine,
        incidents,
        metrics,
        names,
        sink,
        clock_panics,
    }
}

impl Harness {
    pub fn alert(&self) -> TriggerRecord {
        TriggerRecord {
            kind: TriggerKind::Alert,
            name: "WebappReplicaDown".into(),
            at: self.engine.context().clock.now(),
            container: None,
            summary: Some("1 webapp replica(s) down".into()),
        }
    }

    /// Labels every replica of the service with `healstack.action=<value>`.
    pub fn set_action_level(&self, value: &str) {
        for n in &self.names {
            self.rt.label(n, ActionLevel::LABEL, value);
        }
    }

    pub fn trigger_alert(&self) {
        assert!(self.engine.trigger("webapp", self.alert()));
    }

    pub fn resync(&self) {
        self.engine
            .reconcile_all(TriggerKind::Reconcile, "test resync");
    }

    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            self.engine.wait_idle(Duration::from_secs(600)).await,
            "runs did not finish"
        );
    }

    /// Newest last.
    pub fn incidents(&self) -> Vec<Incident> {
        let mut all = self.incidents.recent(1000);
        all.reverse();
        all
    }

    pub fn outcomes(&self) -> Vec<Outcome> {
        self.incidents().iter().map(|i| i.outcome).collect()
    }

    pub fn metric(&self, line: &str) -> bool {
        self.metrics.render().lines().any(|l| l == line)
    }

    pub fn follow_events(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(watch_events(self.engine.clone()))
    }

    /// Waits (virtual time) until `f` holds, at most `limit`; returns how long it took.
    pub async fn until(&self, limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
        let start = tokio::time::Instant::now();
        while !f() {
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(start.elapsed())
    }
}
