//! The agent binary's configuration as users give it: environment variables and `.env`. A bad
//! value stops it at once with exit code 2 and a message naming the variable, never a panic later.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary in an empty directory with only `vars` set (besides PATH), for at most 10 s.
fn run(dir: &std::path::Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-receiver"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("HEAL_PROJECT", "configtest")
        .env("INCIDENT_LOG", "")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the agent did not stop on a bad configuration ({vars:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Reads the agent's JSON log (`LOG_FORMAT=json`) up to its "agent listening" line: the address
/// it serves on, and the lines read so far.
fn listening(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> (String, Vec<String>) {
    let mut log = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("the agent logs until it listens")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        log.push(line);
        if v["message"] == "agent listening" {
            return (v["addr"].as_str().unwrap().to_string(), log);
        }
    }
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "config-env-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_bad_environment_value_stops_the_agent_naming_its_variable() {
    let dir = tempdir("bad");
    let cases: &[(&str, &str)] = &[
        ("RESTART_WINDOW_SECS", "18446744073709551615"),
        ("RESTART_WINDOW_SECS", "0"),
        ("VERIFY_TIMEOUT_SECS", "18446744073709551615"),
        ("LLM_TIMEOUT_SECS", "99999999999999999999"),
        ("RESTART_BACKOFF_MS", "18446744073709551615"),
        ("RESTART_BACKOFF_MAX_MS", "3h"),
        ("RESTART_STABLE_SECS", "a while"),
        ("DEBOUNCE_MS", "-1"),
        ("DRAIN_TIMEOUT", "20"),
        ("INCIDENT_LOG_MAX_BYTES", "0"),
        ("INCIDENT_LOG_KEEP", "-3"),
        ("WEBHOOK_MAX_BYTES", "1"),
        ("RESTART_BUDGET", "0"),
        ("LLM_MAX_TURNS", "1000000"),
        ("HEAL_SERVICES", "web app"),
        ("HEALTH_URL", "nginx/health"),
        ("LLM_PROVIDER", "gemini"),
        ("LISTEN_ADDR", "everywhere"),
        ("DRY_RUN", "perhaps"),
        ("GEMINI_API_KEY_FILE", "/nonexistent/key"),
    ];
    for (var, value) in cases {
        let out = run(&dir, &[(var, value)], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{var}={value}: {stderr}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn secrets_are_refused_as_flags() {
    let dir = tempdir("flags");
    for flag in ["--gemini-api-key", "--openai-api-key", "--webhook-token"] {
        let out = run(&dir, &[], &[flag, "s3cret-value"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("unexpected argument"), "{flag}: {stderr}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_malformed_env_file_stops_the_agent_without_showing_the_line() {
    let dir = tempdir("dotenv");
    std::fs::write(
        dir.join(".env"),
        "RUST_LOG=info\nGEMINI_API_KEY='AIzaUnterminated-secret\n",
    )
    .unwrap();
    let out = run(&dir, &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(".env"), "{stderr}");
    assert!(!stderr.contains("AIzaUnterminated"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn humantime_values_and_secret_files_start_the_agent() {
    let dir = tempdir("good");
    let token = dir.join("token");
    std::fs::write(&token, "from-a-file\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_webhook-receiver"))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("HEAL_PROJECT", "configtest")
        .env("INCIDENT_LOG", dir.join("incidents.jsonl"))
        .env("RESTART_WINDOW_SECS", "10m")
        .env("RESTART_BACKOFF_MS", "1s")
        .env("VERIFY_TIMEOUT_SECS", "45s")
        .env("DRAIN_TIMEOUT", "2s")
        .env("DOCKER_EVENTS", "false")
        .env("WEBHOOK_TOKEN_FILE", &token)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let (addr, _) = listening(&mut lines);
    // The token from the file (its newline dropped) is the one the webhook wants.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = |auth: &'static str| {
        let url = format!("http://{addr}/webhook");
        rt.block_on(async move {
            reqwest::Client::new()
                .post(url)
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(r#"{"version":"4","status":"firing","alerts":[]}"#)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(status("Bearer from-a-file"), 200);
    assert_eq!(status("Bearer from-a-fil"), 401);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn without_a_token_the_agent_generates_keeps_and_shares_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("token");
    let share = dir.join("share/webhook_token");
    let env = |cmd: &mut Command| {
        cmd.current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("HEAL_PROJECT", "configtest")
            .env("INCIDENT_LOG", dir.join("incidents.jsonl"))
            .env("WEBHOOK_TOKEN_SHARE", &share)
            .env("DOCKER_EVENTS", "false")
            .env("DRAIN_TIMEOUT", "1s")
            .env("LOG_FORMAT", "json");
    };
    let start = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-receiver"));
        env(&mut cmd);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let (addr, log) = listening(&mut lines);
        // Serving (so its SIGTERM handler is in place) before a test may stop it.
        let answers = || {
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect(&addr).ok()?;
            c.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").ok()?;
            let mut head = [0u8; 12];
            c.read_exact(&mut head).ok()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while answers().is_none() {
            assert!(
                Instant::now() < deadline,
                "the agent does not answer /healthz"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // The reader stays alive with the child: a closed pipe would fail its next log line.
        (child, addr, log, lines)
    };
    let printed = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-receiver"));
        env(&mut cmd);
        let out = cmd.arg("token").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let stop = |mut child: std::process::Child| {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
    };

    let (child, addr, log, _out) = start();
    let kept = dir.join("webhook-token");
    let token = std::fs::read_to_string(&kept).unwrap();
    assert_eq!(token.len(), 64, "{token}");
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(&share).unwrap(),
        token,
        "Alertmanager's copy"
    );
    assert_eq!(
        std::fs::metadata(&share).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert_eq!(printed(), token, "`webhook-receiver token` prints it");
    assert!(
        !log.iter().any(|l| l.contains(&token)),
        "the token is in the log"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let incidents = |auth: String| {
        let url = format!("http://{addr}/incidents");
        rt.block_on(async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("authorization", auth)
                .send();
            r.await.unwrap().status().as_u16()
        })
    };
    assert_eq!(incidents(format!("Bearer {token}")), 200);
    assert_eq!(incidents("Bearer change-me".into()), 401);
    stop(child);

    // Restarted: the same token (Alertmanager's copy and the user's stay valid).
    std::fs::remove_file(&share).unwrap();
    let (child, _, _, _out) = start();
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), token);
    assert_eq!(std::fs::read_to_string(&share).unwrap(), token);
    stop(child);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_well_known_token_stops_the_agent_unless_allowed() {
    let dir = tempdir("weak");
    let out = run(&dir, &[("WEBHOOK_TOKEN", "change-me")], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("WEBHOOK_TOKEN") && stderr.contains("ALLOW_WEAK_TOKEN"),
        "{stderr}"
    );
    let token = dir.join("token");
    std::fs::write(&token, "change-me\n").unwrap();
    let out = run(
        &dir,
        &[("WEBHOOK_TOKEN_FILE", token.to_str().unwrap())],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a file holding it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}
