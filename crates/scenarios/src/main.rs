//! `scenarios run`: the cases against one running stack (one mode), results in OUT/cases.json.
//! `scenarios report DIR`: every DIR/*/cases.json into DIR/summary.json, DIR/summary.md and the
//! table. `scenarios list`: the cases. `scripts/scenarios` starts the stacks and calls these.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use scenarios::runner::{run_case, CaseResult};
use scenarios::stack::{say, Settings, Stack};
use scenarios::{report, scenarios as suite};

#[derive(Parser)]
#[command(about = "Fault benchmark of the healing agent on the real stack")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the cases against a running stack.
    Run(Box<RunArgs>),
    /// Aggregates DIR/*/cases.json into DIR/summary.json and DIR/summary.md; prints the table.
    Report { dir: PathBuf },
    /// Lists the cases (and which are in the short form); with --mode, the cases that mode
    /// would run (one `scenario/case` a line), and on stderr why any was left out.
    List(ListArgs),
}

#[derive(clap::Args)]
struct ListArgs {
    #[arg(long)]
    mode: Option<String>,
    #[arg(long, default_value = "")]
    only: String,
    #[arg(long)]
    short: bool,
    #[arg(long, env = "SCENARIOS_DAEMON_RESTART", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    allow_daemon_restart: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A label for the results: runbook or llm.
    #[arg(long)]
    mode: String,
    /// Where cases.json and events.jsonl go.
    #[arg(long)]
    out: PathBuf,
    /// Only these scenarios or cases (`killed`, `killed/one`), comma-separated.
    #[arg(long, default_value = "")]
    only: String,
    /// Only the cases of the short form (the test command's step).
    #[arg(long)]
    short: bool,
    /// The Docker daemon is this test's to restart (the daemon_restart cases stop and start
    /// it, stopping every container on the machine). Without it those cases are left out.
    #[arg(long, env = "SCENARIOS_DAEMON_RESTART", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    allow_daemon_restart: bool,
    #[arg(long)]
    project: String,
    #[arg(long)]
    decoy_project: String,
    #[arg(long, default_value = "webapp")]
    service: String,
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    #[arg(long)]
    agent_url: String,
    /// The agent's webhook token.
    #[arg(long, env = "WEBHOOK_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long)]
    sink_url: String,
    #[arg(long)]
    prom_url: String,
    #[arg(long)]
    am_url: String,
    #[arg(long)]
    nginx_url: String,
    #[arg(long, default_value = ".")]
    repo_root: PathBuf,
    /// The static webapp binary (replicas with a shell around it).
    #[arg(long, default_value = "target/dist/webapp")]
    webapp_bin: PathBuf,
    /// An image with /bin/sh.
    #[arg(long, default_value = "local/debian:bookworm-slim")]
    shell_image: String,
    /// Alertmanager's repeat_interval in this stack, in seconds.
    #[arg(long, default_value_t = 15)]
    repeat_interval_secs: u64,
    /// The agent's CRASH_ON_START_TRIES.
    #[arg(long, default_value_t = 2)]
    crash_on_start_tries: usize,
    /// The agent's ESCALATE_AFTER.
    #[arg(long, default_value_t = 3)]
    escalate_after: usize,
    /// Ceiling on the agent's RSS in the fault runs, MiB.
    #[arg(long, default_value_t = 64)]
    rss_limit_mib: u64,
    /// The stack's Locust UI (the sustained load).
    #[arg(long)]
    locust_url: String,
    /// Seconds of load per leg of the sustained-load cases.
    #[arg(long, env = "SCENARIOS_LOAD_SECS", default_value_t = 180)]
    load_secs: u64,
    /// Locust's spawn rate (users per second), as in the README's walkthrough.
    #[arg(long, default_value_t = 10)]
    load_spawn_rate: u32,
    /// Which leg of a sustained-load case runs first: agent or policy.
    #[arg(long, env = "SCENARIOS_LOAD_FIRST", default_value = "agent", value_parser = ["agent", "policy"])]
    load_first: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("scenarios: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<bool> {
    match Cli::parse().command {
        Command::List(l) => {
            if let Some(mode) = &l.mode {
                let sel = suite::select(&l.only, l.short, mode, l.allow_daemon_restart)?;
                for c in &sel.cases {
                    println!("{}/{}", c.scenario, c.case);
                }
                for why in &sel.left_out {
                    eprintln!("{mode} mode: {why}");
                }
                return Ok(true);
            }
            for c in suite::CASES {
                println!(
                    "{:<40} modes: {:<12} short: {:<12} {}{}",
                    format!("{}/{}", c.scenario, c.case),
                    c.modes.join(","),
                    c.short.join(","),
                    c.about,
                    if c.restarts_daemon {
                        " [restarts the Docker daemon: needs --allow-daemon-restart]"
                    } else {
                        ""
                    }
                );
            }
            Ok(true)
        }
        Command::Report { dir } => report_dir(&dir),
        Command::Run(args) => run_cases(*args).await,
    }
}

async fn run_cases(a: RunArgs) -> Result<bool> {
    let sel = suite::select(&a.only, a.short, &a.mode, a.allow_daemon_restart)?;
    for why in &sel.left_out {
        say(format!("NOTE: {why}"));
    }
    std::fs::create_dir_all(&a.out)?;
    std::fs::write(
        a.out.join("left-out.json"),
        serde_json::to_string_pretty(&sel.left_out)?,
    )?;
    let cases = sel.cases;
    anyhow::ensure!(!cases.is_empty(), "no case selected");
    if cases.iter().any(|c| c.restarts_daemon) {
        if let Some(why) = scenarios::dockerd::refuse_reason() {
            anyhow::bail!("the daemon_restart cases cannot run here: {why}");
        }
    }
    let repo_root = std::fs::canonicalize(&a.repo_root).context("repo root")?;
    let webapp_bin = repo_root.join(&a.webapp_bin);
    anyhow::ensure!(
        webapp_bin.exists(),
        "{} is missing (scripts/offline-images builds it)",
        webapp_bin.display()
    );
    let cfg = Settings {
        mode: a.mode.clone(),
        project: a.project,
        decoy_project: a.decoy_project,
        service: a.service,
        replicas: a.replicas,
        agent_url: a.agent_url,
        token: a.token,
        sink_url: a.sink_url,
        prom_url: a.prom_url,
        am_url: a.am_url,
        nginx_url: a.nginx_url,
        repo_root,
        out_dir: a.out.clone(),
        webapp_bin,
        shell_image: a.shell_image,
        repeat_interval: Duration::from_secs(a.repeat_interval_secs),
        crash_on_start_tries: a.crash_on_start_tries,
        escalate_after: a.escalate_after,
        rss_limit_bytes: a.rss_limit_mib as f64 * 1048576.0,
        locust_url: a.locust_url,
        load_secs: a.load_secs,
        load_spawn_rate: a.load_spawn_rate,
        load_first: a.load_first,
    };
    let stack = Stack::new(cfg).await?;
    say(format!(
        "{} mode: {} case(s): {}",
        a.mode,
        cases.len(),
        cases
            .iter()
            .map(|c| format!("{}/{}", c.scenario, c.case))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut results: Vec<CaseResult> = Vec::new();
    for (i, def) in cases.iter().enumerate() {
        say(format!("case {}/{}", i + 1, cases.len()));
        results.push(run_case(&stack, def).await);
        // Written after every case: a run cut short still leaves its results.
        std::fs::write(
            a.out.join("cases.json"),
            serde_json::to_string_pretty(&results)?,
        )?;
    }
    if let Err(e) = stack.baseline().await {
        say(format!("final baseline not reached: {e:#}"));
    }
    match *stack.reset_status.lock().expect("lock") {
        Some(s) if s != 200 => say(format!(
            "note: POST /reset answered {s}: this agent cannot forget a replica's budget and escalation state between cases"
        )),
        _ => {}
    }
    std::fs::write(
        a.out.join("harness-ops.json"),
        serde_json::to_string_pretty(&stack.docker.ops())?,
    )?;
    stack.events.stop().await;
    println!("{}", report::text(&report::rows(&results)));
    print!("{}", report::load_text(&results));
    print!("{}", report::preventive_text(&results));
    Ok(results.iter().all(|r| r.verdict == "correct"))
}

fn report_dir(dir: &std::path::Path) -> Result<bool> {
    let mut results: Vec<CaseResult> = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("cases.json")))
        .filter(|p| p.exists())
        .collect();
    runs.sort_by_key(|p| {
        // runbook first, then llm, then anything else
        let m = p
            .parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        (
            match m.as_str() {
                "runbook" => 0,
                "llm" => 1,
                _ => 2,
            },
            m,
        )
    });
    for p in &runs {
        let text = std::fs::read_to_string(p)?;
        let mut r: Vec<CaseResult> =
            serde_json::from_str(&text).with_context(|| format!("{}", p.display()))?;
        results.append(&mut r);
        let lo = p.with_file_name("left-out.json");
        if let Ok(text) = std::fs::read_to_string(&lo) {
            let mut l: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
            left_out.append(&mut l);
        }
    }
    anyhow::ensure!(
        !results.is_empty(),
        "no DIR/*/cases.json in {}",
        dir.display()
    );
    let rows = report::rows(&results);
    let mut md = report::markdown(&rows);
    let load_md = report::load_markdown(&results);
    if !load_md.is_empty() {
        md.push_str("\nSustained load, the agent against Docker's restart policy (same stack, one leg after the other):\n\n");
        md.push_str(&load_md);
    }
    let preventive_md = report::preventive_markdown(&results);
    if !preventive_md.is_empty() {
        md.push_str("\nPreventive recycling under load (PREVENTIVE_RECYCLE=on; users20 beside Docker's restart policy):\n\n");
        md.push_str(&preventive_md);
    }
    for why in &left_out {
        md.push_str(&format!("\nNot run: {why}\n"));
    }
    let load: Vec<serde_json::Value> = report::load_rows(&results)
        .iter()
        .map(|r| serde_json::json!({"mode": r.mode, "case": r.case, "verdict": r.verdict, "load_secs": r.load_secs, "leg": r.leg}))
        .collect();
    let summary = serde_json::json!({
        "generated_at": chrono::Utc::now().to_rfc3339(),
        "rows": rows,
        "load": load,
        "cases": results,
        "left_out": left_out,
        "all_correct": results.iter().all(|r| r.verdict == "correct"),
    });
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    std::fs::write(dir.join("summary.md"), &md)?;
    println!("{}", report::text(&rows));
    print!("{}", report::load_text(&results));
    print!("{}", report::preventive_text(&results));
    println!("\nMarkdown (for the README):\n\n{md}");
    println!("summary: {}", dir.join("summary.json").display());
    // Last, so that the end of the output (all a CI log may keep) names what went wrong.
    print!("{}", report::failures(&results));
    Ok(true)
}
