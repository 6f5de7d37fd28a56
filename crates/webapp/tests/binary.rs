//! The real `webapp` binary: config errors, the healthcheck subcommand, signals.

mod helpers;

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn webapp(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webapp"));
    command
        .env_clear()
        .envs(vars.iter().copied())
        .kill_on_drop(true);
    command
}

async fn output(mut command: Command) -> Output {
    tokio::time::timeout(Duration::from_secs(10), command.output())
        .await
        .expect("webapp exits in time")
        .expect("webapp runs")
}

#[tokio::test]
async fn bad_config_fails_at_start_naming_variable_and_value() {
    for (var, bad) in [("PORT", "abc"), ("LEAK_BYTES_PER_REQUEST", "-1")] {
        let out = output(webapp(&[(var, bad)])).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={bad} should fail");
        assert!(stderr.contains(var) && stderr.contains(bad), "{stderr}");
    }
}

#[tokio::test]
async fn healthcheck_subcommand_exits_0_for_a_running_app_and_1_for_a_closed_port() {
    let app = helpers::spawn_app(0).await;
    let port = app.addr.port().to_string();
    let vars = [("PORT", port.as_str()), ("METRICS_PORT", "0")];
    let out = output({
        let mut c = webapp(&vars);
        c.arg("healthcheck");
        c
    })
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    app.shutdown().await.unwrap();

    // Same port, now closed.
    let out = output({
        let mut c = webapp(&vars);
        c.arg("healthcheck");
        c
    })
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    stops_cleanly_on("TERM", "SIGTERM").await;
}

#[tokio::test]
async fn sigint_shuts_down_cleanly() {
    stops_cleanly_on("INT", "SIGINT").await;
}

/// A line reader over the webapp's stdout (JSON logs).
type LogLines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Starts the binary on loopback (ports picked by the OS, JSON logs) and waits until it listens;
/// returns it, its log lines, and the app's address.
async fn start_webapp(extra: &[(&str, &str)]) -> (tokio::process::Child, LogLines, String) {
    let mut vars = vec![
        ("BIND_ADDR", "127.0.0.1"),
        ("PORT", "0"),
        ("METRICS_PORT", "0"),
        ("LOG_FORMAT", "json"),
    ];
    vars.extend_from_slice(extra);
    let mut child = webapp(&vars).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    // The "listening" log line is how a caller learns the ports bound for port 0.
    let listening: serde_json::Value = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("webapp logs before exiting");
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            if event["message"] == "listening" {
                return event;
            }
        }
    })
    .await
    .expect("webapp starts listening");
    let addr = listening["app_addr"].as_str().unwrap().to_string();
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    (child, lines, addr)
}

fn send_signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits for the exit (exit 0 expected) and returns the rest of the log.
async fn exits_cleanly(mut child: tokio::process::Child, mut lines: LogLines) -> String {
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("webapp exits after the signal")
        .unwrap();
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push_str(&line);
        rest.push('\n');
    }
    rest
}

async fn stops_cleanly_on(kill_signal: &str, logged: &str) {
    let (child, lines, _) = start_webapp(&[]).await;
    send_signal(&child, kill_signal);
    let rest = exits_cleanly(child, lines).await;
    assert!(rest.contains(logged), "{rest}");
    assert!(rest.contains("shut down cleanly"), "{rest}");
}

/// The test knob for a replica that will not drain: SIGTERM changes nothing (Docker's stop
/// timeout will SIGKILL it), SIGINT still stops it.
#[tokio::test]
async fn ignore_sigterm_keeps_serving_through_sigterm() {
    let (mut child, lines, addr) = start_webapp(&[("IGNORE_SIGTERM", "true")]).await;
    send_signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(child.try_wait().unwrap().is_none(), "exited on SIGTERM");
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);

    send_signal(&child, "INT");
    let rest = exits_cleanly(child, lines).await;
    assert!(rest.contains("SIGTERM ignored"), "{rest}");
    assert!(rest.contains("SIGINT"), "{rest}");
}

/// `IGNORE_SIGTERM=false` (what compose passes by default) is the normal drain.
#[tokio::test]
async fn ignore_sigterm_false_drains_on_sigterm() {
    let (child, lines, _) = start_webapp(&[("IGNORE_SIGTERM", "false")]).await;
    send_signal(&child, "TERM");
    let rest = exits_cleanly(child, lines).await;
    assert!(rest.contains("shut down cleanly"), "{rest}");
}
