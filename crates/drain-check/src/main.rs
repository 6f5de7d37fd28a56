//! `drain-check`: takes each replica of a running compose service out and back, one at a time,
//! under steady load through nginx, and counts the requests users saw fail.
//!
//! `drain-check run` works on a stack `scripts/check-drain` started (the stack's own webapp and
//! nginx services): it starts the load, then per replica sends `docker stop` (SIGTERM, SIGKILL
//! after the stop timeout) or `docker kill`, waits for the exit, `docker start`s it and waits for
//! its healthcheck, and times each step from Docker's event stream. It prints the figures, writes
//! them as JSON, and with `--require-zero-failures` fails if any request failed.
//! `drain-check table` prints runs side by side.
//!
//! - `load`: the users and what each request got.
//! - `docker`: the docker CLI and its event stream.
//! - `nginx_log`: failed and passed-on requests from nginx's own log.
//! - `report`: figures, JSON, table.

mod docker;
mod load;
mod nginx_log;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use docker::{cli, now, Events};
use report::{Cycle, Run, Summary};

#[derive(Debug, Parser)]
#[command(
    name = "drain-check",
    about = "Failed requests while replicas are stopped and started behind nginx"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Cycle every replica of a running stack under load.
    Run(RunArgs),
    /// Print runs (their JSON files) side by side.
    Table { files: Vec<PathBuf> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Action {
    /// `docker stop`: SIGTERM, SIGKILL when the stop timeout passes.
    Stop,
    /// `docker kill`: SIGKILL at once, as a crash or the OOM killer.
    Kill,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The compose project of the stack.
    #[arg(long)]
    project: String,
    #[arg(long, default_value = "webapp")]
    service: String,
    #[arg(long, default_value = "nginx")]
    nginx_service: String,
    /// nginx as users reach it.
    #[arg(long)]
    url: String,
    #[arg(long, value_enum, default_value = "stop")]
    action: Action,
    /// `docker stop -t`; unset, each container's own (compose's `stop_grace_period`).
    #[arg(long)]
    stop_timeout: Option<u64>,
    /// Names the run in the figures.
    #[arg(long, default_value = "run")]
    label: String,
    /// Concurrent users, each one keep-alive connection.
    #[arg(long, default_value_t = 8)]
    users: usize,
    /// Each user's pause between requests.
    #[arg(long, default_value_t = 25)]
    pause_ms: u64,
    /// Every Nth request of a user is a POST (0: none), which nginx cannot pass on once sent.
    #[arg(long, default_value_t = 0)]
    post_every: usize,
    /// How many times every replica is taken out and back.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Load before the first stop, and after each replica is healthy again.
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    #[arg(long, default_value_t = 2)]
    settle_secs: u64,
    /// Where the JSON figures go.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit 1 if any request failed (at the client or at nginx), or if a replica cut one after
    /// nginx had sent it (a GET nginx could still pass on; a POST it could not).
    #[arg(long)]
    require_zero_failures: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Run(args) => run(args).await,
        Cmd::Table { files } => {
            let runs = files
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?;
                    serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))
                })
                .collect::<Result<Vec<Summary>>>()?;
            print!("{}", report::table(&runs));
            Ok(())
        }
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let replicas = docker::replicas(&args.project, &args.service).await?;
    if replicas.len() < 2 {
        bail!(
            "{} replicas of {} running in {}: need 2 or more (one serves while another is out)",
            replicas.len(),
            args.service,
            args.project
        );
    }
    if let Some(r) = replicas.iter().find(|r| !r.healthy) {
        bail!("{} is not healthy yet", r.name);
    }
    let nginx = docker::replicas(&args.project, &args.nginx_service)
        .await?
        .into_iter()
        .next()
        .context("no nginx container in the project")?;
    let probe = reqwest::get(&args.url)
        .await
        .context("nginx does not answer")?;
    if !probe.status().is_success() {
        bail!(
            "nginx answers {} before anything was stopped",
            probe.status()
        );
    }

    let names: BTreeMap<String, String> = replicas
        .iter()
        .map(|r| (r.hostname.clone(), r.name.clone()))
        .collect();
    let events = Events::follow(&args.project, &args.service)?;
    let load_started = now();
    let load = load::Load::start(
        &args.url,
        args.users,
        Duration::from_millis(args.pause_ms),
        args.post_every,
    )?;
    tokio::time::sleep(Duration::from_secs(args.warmup_secs)).await;

    let mut cycles = Vec::new();
    let mut stop_timeouts = Vec::new();
    for _ in 0..args.rounds {
        for replica in &replicas {
            let timeout = args.stop_timeout.unwrap_or(replica.stop_timeout_s);
            stop_timeouts.push(timeout);
            let cycle = match cycle(&args, &events, &replica.name, timeout).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = load.finish().await;
                    return Err(e.context(format!("cycling {}", replica.name)));
                }
            };
            let c = &cycle.cycle;
            eprintln!(
                "{}: {} exit {:?} after {:.0} ms, healthy after {:.0} ms",
                args.label, c.replica, c.exit_code, c.to_exit_ms, c.to_healthy_ms
            );
            cycles.push(cycle);
            tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
        }
    }
    let samples = load.finish().await;
    events.stop().await;
    let nginx_log = container_log(&nginx.name, load_started).await?;

    for c in &mut cycles {
        let (requests, failed) = report::failed_between(&samples, c.window_start, c.window_end);
        c.cycle.requests = requests;
        c.cycle.failed = failed;
    }
    let summary = report::summarise(Run {
        label: args.label.clone(),
        action: match args.action {
            Action::Stop => "stop",
            Action::Kill => "kill",
        },
        stop_timeout_s: stop_timeouts
            .first()
            .copied()
            .filter(|_| args.action == Action::Stop),
        replicas: replicas.len(),
        users: args.users,
        samples: &samples,
        nginx: nginx_log::parse(&nginx_log),
        cycles: cycles.into_iter().map(|c| c.cycle).collect(),
        names,
    });
    print!("{}", report::describe(&summary));
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&summary)?)?;
    }
    let nginx = &summary.nginx;
    if args.require_zero_failures
        && (summary.failed > 0 || nginx.failed > 0 || nginx.cut_after_sending > 0)
    {
        bail!(
            "{}: {} requests failed at the client, {} at nginx, {} cut after nginx sent them; want 0",
            summary.label,
            summary.failed,
            nginx.failed,
            nginx.cut_after_sending
        );
    }
    Ok(())
}

/// A cycle and the window (signal to healthy) its failures are counted in.
struct Timed {
    cycle: Cycle,
    window_start: f64,
    window_end: f64,
}

async fn cycle(args: &RunArgs, events: &Events, name: &str, stop_timeout: u64) -> Result<Timed> {
    let asked = now();
    match args.action {
        Action::Stop => {
            let t = stop_timeout.to_string();
            cli(&["stop", "-t", &t, name]).await?;
        }
        Action::Kill => {
            cli(&["kill", name]).await?;
        }
    }
    let exit_wait = Duration::from_secs(stop_timeout + 30);
    let died = events
        .wait_for(name, asked, |a| a == "die", exit_wait)
        .await?;
    let signals: Vec<i64> = events
        .between(name, asked, died.at)
        .iter()
        .filter(|e| e.action == "kill")
        .filter_map(|e| e.signal)
        .collect();
    let signalled = events
        .between(name, asked, died.at)
        .iter()
        .find(|e| e.action == "kill")
        .map_or(asked, |e| e.at);

    let start_asked = now();
    cli(&["start", name]).await?;
    let started = events
        .wait_for(name, start_asked, |a| a == "start", Duration::from_secs(30))
        .await?;
    let healthy = events
        .wait_for(
            name,
            started.at,
            |a| a == "health_status: healthy",
            Duration::from_secs(60),
        )
        .await?;
    Ok(Timed {
        cycle: Cycle {
            replica: name.to_string(),
            signal: signals.first().copied(),
            then_signal: signals.get(1).copied(),
            exit_code: died.exit_code,
            to_exit_ms: (died.at - signalled) * 1e3,
            to_healthy_ms: (healthy.at - signalled) * 1e3,
            start_to_healthy_ms: (healthy.at - started.at) * 1e3,
            failed: 0,
            requests: 0,
        },
        window_start: signalled,
        window_end: healthy.at,
    })
}

/// A container's output (stdout and stderr) since `since` (epoch seconds).
async fn container_log(name: &str, since: f64) -> Result<String> {
    let since = format!("{since:.3}");
    let out = tokio::process::Command::new("docker")
        .args(["logs", "--since", &since, name])
        .output()
        .await
        .context("docker logs")?;
    if !out.status.success() {
        bail!(
            "docker logs {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
