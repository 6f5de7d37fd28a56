//! `agent-bench`: starts the release healing agent on loopback and measures what issue 3 asks for:
//! start-up time, webhook intake throughput and latency under a burst, resident memory idle and
//! under that burst. Prints a table and writes a JSON summary.
//!
//! - `agent`: the agent as a child process (killed on drop), its VmRSS.
//! - `load`: the Alertmanager payload, the keep-alive load generator, percentiles.

mod agent;
mod load;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde::Serialize;

use agent::Agent;
use load::{BurstResult, BurstSpec};

#[derive(Debug, Parser)]
#[command(
    name = "agent-bench",
    about = "Benchmark the healing agent's webhook intake"
)]
struct Cli {
    /// The agent binary to measure.
    #[arg(long, default_value = "target/release/webhook-receiver")]
    agent: PathBuf,
    /// Requests per burst.
    #[arg(long, default_value_t = 50_000)]
    requests: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// A burst stops after this many seconds even if not all requests were sent.
    #[arg(long, default_value_t = 30)]
    max_secs: u64,
    /// Cold starts to time (the median is reported).
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// Where to write the JSON summary.
    #[arg(long, default_value = "target/bench/summary.json")]
    out: PathBuf,
}

/// Burst variants: alerts for the healed service (the engine coalesces them into runs, which find
/// no containers in the empty project) and for a service outside the scope (pure intake).
const VARIANTS: [(&str, &str); 2] = [("in scope", "webapp"), ("out of scope", "billing")];
/// Pause before reading idle memory and after a burst, so background work settles.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct Summary {
    cpus: usize,
    note: &'static str,
    agent_binary: String,
    agent_binary_bytes: u64,
    agent_log_level: &'static str,
    startup_ms: Startup,
    payload_bytes: usize,
    concurrency: usize,
    variants: Vec<Variant>,
}

#[derive(Serialize)]
struct Startup {
    median: f64,
    min: f64,
    max: f64,
    runs: Vec<f64>,
}

#[derive(Serialize)]
struct Variant {
    name: &'static str,
    service: &'static str,
    rss_idle_kib: u64,
    #[serde(flatten)]
    burst: BurstResult,
    rss_after_kib: u64,
    incidents_by_outcome: BTreeMap<String, usize>,
}

/// The whole run stops after this, whatever happens.
const RUN_LIMIT: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Returning drops the bench future and with it the running agent (see `Agent`'s Drop), so an
    // interrupt or the time limit never leaves an agent behind.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::time::timeout(RUN_LIMIT, bench(cli)) => {
            r.map_err(|_| anyhow::anyhow!("benchmark exceeded {} s; stopped", RUN_LIMIT.as_secs()))?
        }
        _ = tokio::signal::ctrl_c() => bail!("interrupted; agent stopped"),
        _ = term.recv() => bail!("terminated; agent stopped"),
    }
}

async fn bench(cli: Cli) -> anyhow::Result<()> {
    if cli.requests == 0 || cli.concurrency == 0 || cli.starts == 0 {
        bail!("--requests, --concurrency and --starts must be at least 1");
    }
    // Absolute, because each agent runs in its own scratch directory.
    let agent_bin = std::fs::canonicalize(&cli.agent).with_context(|| {
        format!(
            "{}: build it first (cargo build --release)",
            cli.agent.display()
        )
    })?;
    let binary_bytes = std::fs::metadata(&agent_bin)?.len();
    let work = TempDir::new()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(cli.concurrency)
        .timeout(Duration::from_secs(5))
        .build()?;

    let mut runs = Vec::new();
    for i in 0..cli.starts {
        let (_agent, took) =
            Agent::start(&agent_bin, &work.sub(&format!("start-{i}"))?, &http).await?;
        runs.push(took.as_secs_f64() * 1e3);
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let startup = Startup {
        median: *load::percentile(&sorted, 50.0).expect("at least one start"),
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        runs,
    };

    let spec = BurstSpec {
        requests: cli.requests,
        concurrency: cli.concurrency,
        max_duration: Duration::from_secs(cli.max_secs),
    };
    let mut variants = Vec::new();
    for (name, service) in VARIANTS {
        let (mut agent, _) = Agent::start(&agent_bin, &work.sub(service)?, &http).await?;
        variants.push(run_variant(&mut agent, &http, &spec, name, service).await?);
    }

    let summary = Summary {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        note: "load generator and agent run on the same machine and share its CPUs",
        agent_binary: cli.agent.display().to_string(),
        agent_binary_bytes: binary_bytes,
        agent_log_level: agent::LOG_LEVEL,
        startup_ms: startup,
        payload_bytes: load::payload("webapp").len(),
        concurrency: cli.concurrency,
        variants,
    };
    print_table(&summary);
    if let Some(dir) = cli.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&cli.out, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", cli.out.display()))?;
    println!("\nsummary: {}", cli.out.display());
    Ok(())
}

async fn run_variant(
    agent: &mut Agent,
    http: &reqwest::Client,
    spec: &BurstSpec,
    name: &'static str,
    service: &'static str,
) -> anyhow::Result<Variant> {
    tokio::time::sleep(SETTLE).await;
    let rss_idle_kib = agent.rss_kib().context("agent gone before the burst")?;
    let body = load::payload(service);

    // One probe shows the variant does what it claims (and fails fast on a wrong token or payload).
    let answer: serde_json::Value = http
        .post(agent.url("/webhook"))
        .bearer_auth(agent::TOKEN)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let expected_ignored = if service == "webapp" { 0 } else { 4 };
    if answer["ignored"] != expected_ignored {
        bail!("probe for {service}: unexpected answer {answer}");
    }

    // Warm-up: open the keep-alive connections, so the burst measures intake, not TCP handshakes.
    let warmup = BurstSpec {
        requests: spec.concurrency * 4,
        ..*spec
    };
    load::burst(
        http,
        &agent.url("/webhook"),
        body.clone(),
        agent.pid(),
        &warmup,
    )
    .await;
    let burst = load::burst(http, &agent.url("/webhook"), body, agent.pid(), spec).await;
    agent.check_alive()?;

    tokio::time::sleep(SETTLE).await;
    let rss_after_kib = agent.rss_kib().context("agent gone after the burst")?;
    let incidents: Vec<serde_json::Value> = http
        .get(agent.url("/incidents?limit=1000"))
        .bearer_auth(agent::TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut incidents_by_outcome = BTreeMap::new();
    for i in &incidents {
        let outcome = i["outcome"].as_str().unwrap_or("?").to_string();
        *incidents_by_outcome.entry(outcome).or_default() += 1;
    }
    Ok(Variant {
        name,
        service,
        rss_idle_kib,
        burst,
        rss_after_kib,
        incidents_by_outcome,
    })
}

fn print_table(s: &Summary) {
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    println!(
        "agent             {} ({:.1} MiB binary, log level {})",
        s.agent_binary,
        s.agent_binary_bytes as f64 / (1024.0 * 1024.0),
        s.agent_log_level
    );
    println!(
        "start-up          {:.1} ms median to first /healthz 200 (min {:.1}, max {:.1}; {} starts)",
        s.startup_ms.median,
        s.startup_ms.min,
        s.startup_ms.max,
        s.startup_ms.runs.len()
    );
    println!(
        "burst             POST /webhook, {} keep-alive connections, {} B payload (4 firing alerts)",
        s.concurrency, s.payload_bytes
    );
    println!(
        "machine           {} CPUs, shared by the load generator and the agent\n",
        s.cpus
    );

    let row = |label: &str, f: &dyn Fn(&Variant) -> String| {
        let cells: Vec<String> = s.variants.iter().map(|v| format!("{:>24}", f(v))).collect();
        println!("{label:<22}{}", cells.join(""));
    };
    row("", &|v| format!("{} ({})", v.name, v.service));
    row("requests", &|v| v.burst.requests.to_string());
    row("errors (non-2xx/io)", &|v| v.burst.errors.to_string());
    row("duration", &|v| format!("{:.2} s", v.burst.duration_s));
    row("throughput", &|v| {
        format!("{:.0} req/s", v.burst.throughput_rps)
    });
    row("latency p50", &|v| format!("{:.2} ms", v.burst.p50_ms));
    row("latency p99", &|v| format!("{:.2} ms", v.burst.p99_ms));
    row("latency max", &|v| format!("{:.2} ms", v.burst.max_ms));
    row("RSS idle", &|v| mib(v.rss_idle_kib));
    row("RSS peak (burst)", &|v| mib(v.burst.rss_peak_kib));
    row("RSS after (+2 s)", &|v| mib(v.rss_after_kib));
    row("incidents recorded", &|v| {
        let parts: Vec<String> = v
            .incidents_by_outcome
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        if parts.is_empty() {
            "0".into()
        } else {
            parts.join(", ")
        }
    });
}

/// A scratch directory for the agents' incident logs and output, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("agent-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }

    fn sub(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir: &Path = &self.0;
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub)?;
        Ok(sub)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
