//! `proxy-bench`: what the socket proxy adds to each of the agent's Docker calls.
//!
//! Starts the release `socket-proxy` in front of the local dockerd, creates one running container
//! labelled as a replica of `<project>-webapp`, and makes the agent's real calls (its own client,
//! webhook-receiver's `DockerRuntime` on bollard) `--rounds` times straight to the Unix socket and
//! through the proxy, interleaved (socket, proxy, socket, ...) so both see the same daemon and the
//! same machine load. The event subscription is timed to its response head with a plain hyper
//! client (bollard's stream shows nothing until an event). Prints median and p99 per call and
//! path, and their difference; asserts nothing. The container and the proxy go at the end.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use webhook_receiver::runtime::docker::DockerRuntime;
use webhook_receiver::runtime::{ContainerRef, ContainerRuntime};

#[derive(Debug, Parser)]
#[command(
    name = "proxy-bench",
    about = "The socket proxy's added latency per agent call"
)]
struct Cli {
    /// The proxy binary to measure.
    #[arg(long, default_value = "target/release/socket-proxy")]
    proxy: PathBuf,
    /// dockerd's socket.
    #[arg(long, default_value = "/var/run/docker.sock")]
    socket: PathBuf,
    /// Compose project of the container the calls go to (created and removed here).
    #[arg(long, default_value = "proxybench")]
    project: String,
    /// Image of that container (it runs `sleep`; the agent's tests import Debian's busybox as this).
    #[arg(long, default_value = "healing-test/busybox:1")]
    image: String,
    /// Calls of each kind on each path.
    #[arg(long, default_value_t = 300)]
    rounds: usize,
}

/// Removes the container and stops the proxy, also on error.
struct Guard {
    name: String,
    proxy: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = &mut self.proxy {
            let _ = p.kill();
            let _ = p.wait();
        }
        remove(&self.name);
    }
}

fn remove(container: &str) {
    let _ = Command::new("docker")
        .args(["rm", "-f", container])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let name = format!("{}-webapp-1", cli.project);
    // A leftover of an interrupted run goes first.
    remove(&name);
    let mut guard = Guard {
        name: name.clone(),
        proxy: None,
    };
    let created = Command::new("docker")
        .args(["run", "-d", "--name", &name])
        .args([
            "--label",
            &format!("com.docker.compose.project={}", cli.project),
        ])
        .args(["--label", "com.docker.compose.service=webapp"])
        .args([&cli.image, "sh", "-c", "seq 1 200; exec sleep 3600"])
        .output()
        .context("running the docker CLI")?;
    if !created.status.success() {
        bail!(
            "docker run {}: {} (build the image with `cargo test -p webhook-receiver --test healing -- --ignored` once, or pass --image)",
            cli.image,
            String::from_utf8_lossy(&created.stderr).trim()
        );
    }
    let id = String::from_utf8(created.stdout)?.trim().to_string();

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    guard.proxy = Some(
        Command::new(&cli.proxy)
            .env_clear()
            .env("LISTEN_ADDR", addr.to_string())
            .env("UPSTREAM_SOCKET", &cli.socket)
            .env("HEAL_PROJECT", &cli.project)
            .env("HEAL_SERVICES", "webapp")
            // One log line per request would measure the log sink.
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (cargo build --release -p socket-proxy)",
                    cli.proxy.display()
                )
            })?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the proxy does not listen on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let raw = DockerRuntime::new(Some(format!("unix://{}", cli.socket.display())));
    let proxied = DockerRuntime::new(Some(format!("tcp://{addr}")));
    let target = ContainerRef {
        id,
        name: name.clone(),
        project: cli.project.clone(),
        service: "webapp".into(),
        labels: Default::default(),
    };
    let events_target = format!(
        "/v1.41/events?filters={}",
        socket_proxy::query::encode(&format!(
            r#"{{"type":["container"],"event":["die","oom","health_status","stop","pause","kill"],"label":["com.docker.compose.project={}"]}}"#,
            cli.project
        ))
    );

    // Warm-up: version negotiation, page cache, the proxy's first connections.
    for rt in [&raw, &proxied] {
        rt.list(&cli.project, "webapp").await?;
        rt.inspect(&target, false).await?;
    }
    let calls = [
        "list",
        "inspect",
        "logs tail (50)",
        "start, running (304)",
        "events subscribe",
    ];
    let mut times: Vec<[Vec<f64>; 2]> = calls.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    for _ in 0..cli.rounds {
        for (path, rt) in [&raw, &proxied].into_iter().enumerate() {
            for (i, call) in calls.iter().enumerate() {
                let t = Instant::now();
                match *call {
                    "list" => {
                        let l = rt.list(&cli.project, "webapp").await?;
                        anyhow::ensure!(l.len() == 1, "list found {} containers", l.len());
                    }
                    "inspect" => {
                        rt.inspect(&target, false).await?;
                    }
                    "logs tail (50)" => {
                        let logs = rt.logs_tail(&name, 50).await?;
                        anyhow::ensure!(logs.lines().count() == 50, "logs: {logs}");
                    }
                    "start, running (304)" => rt.start(&name).await?,
                    _ => {
                        let status = if path == 0 {
                            subscribe_unix(&cli.socket, &events_target).await?
                        } else {
                            subscribe_tcp(addr, &events_target).await?
                        };
                        anyhow::ensure!(status == 200, "events answered {status}");
                    }
                }
                times[i][path].push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }

    println!(
        "socket proxy latency, {} rounds per call and path, interleaved; {} CPUs, machine shared with other work",
        cli.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<22} {:>14} {:>14} {:>14} {:>14} {:>12} {:>12}",
        "call",
        "socket p50 ms",
        "socket p99 ms",
        "proxy p50 ms",
        "proxy p99 ms",
        "added p50",
        "added p99"
    );
    for (i, call) in calls.iter().enumerate() {
        let [s, p] = &mut times[i];
        let (s50, s99, p50, p99) = (pct(s, 50.0), pct(s, 99.0), pct(p, 50.0), pct(p, 99.0));
        println!(
            "{call:<22} {s50:>14.2} {s99:>14.2} {p50:>14.2} {p99:>14.2} {:>12.2} {:>12.2}",
            p50 - s50,
            p99 - s99
        );
    }
    println!("(through the proxy, every container call also pays the proxy's own inspect: the label check)");
    Ok(())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i]
}

/// Time to the response head of an event subscription: what `events()` waits for before the
/// agent acts (the stream itself stays open until dropped).
async fn subscribe_unix(socket: &std::path::Path, target: &str) -> anyhow::Result<u16> {
    let s = tokio::net::UnixStream::connect(socket).await?;
    subscribe(TokioIo::new(s), target).await
}

async fn subscribe_tcp(addr: SocketAddr, target: &str) -> anyhow::Result<u16> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    subscribe(TokioIo::new(s), target).await
}

async fn subscribe<T>(io: T, target: &str) -> anyhow::Result<u16>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
    let task = tokio::spawn(conn);
    let req = hyper::Request::get(target)
        .header("host", "docker")
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    drop(resp);
    task.abort();
    Ok(status)
}
