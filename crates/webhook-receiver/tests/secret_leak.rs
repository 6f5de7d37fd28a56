//! The real agent binary, `RUST_LOG=trace`, against a fake provider whose error bodies hold the
//! API key (as a misconfigured proxy or a provider echoing the request would): the key and the
//! webhook token appear in no log line, no incident in the log file and no `/incidents` answer.
//! The run itself must still heal the replica (the runbook takes over from the failing model).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_llm::{Brain, FakeGemini, FakeOpenAi, GeminiOptions, Script};
use serde_json::{json, Value};
use support::{webapp_alert, Project, Replica};

const GEMINI_KEY: &str = "AIzaLeakCanary-5b7e0c1d9f";
const TOKEN: &str = "webhook-token-canary-77d1";

/// Replies that put `key` in the body of every kind of failure, after one good turn.
fn leaky_script(key: &str) -> Script {
    Script::new()
        .call("list_webapp_status", json!({}))
        .error(500, &format!("internal error while using key {key}"))
        .raw(429, "text/plain", &format!("slow down, {key}"))
        .raw(
            200,
            "application/json",
            &format!("{{\"choices\": \"{key}\", \"candidates\": \"{key}\"}}"),
        )
}

struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    url: String,
    log: std::path::PathBuf,
}

fn start_agent(project: &str, env: &[(&str, &str)]) -> Agent {
    let dir = support::tempdir("leak").unwrap();
    let log = dir.join("incidents.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-receiver"));
    // A directory of its own, so that no developer's .env is read.
    cmd.current_dir(&dir)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("HEAL_PROJECT", project)
        .env("HEALTH_URL", "")
        .env("INCIDENT_LOG", &log)
        .env("DOCKER_EVENTS", "false")
        .env("DEBOUNCE_MS", "50")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "trace")
        .env("WEBHOOK_TOKEN", TOKEN)
        .env("LLM_TIMEOUT_SECS", "30")
        .env_remove("GEMINI_API_KEY")
        .env_remove("GOOGLE_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the agent binary");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let readers = vec![
        read_lines(child.stdout.take().unwrap(), lines.clone()),
        read_lines(child.stderr.take().unwrap(), lines.clone()),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let found = lines.lock().unwrap().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "agent listening").then(|| v["addr"].as_str().map(str::to_string))?
        });
        if let Some(a) = found {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not start: {:#?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Secrets travel in the environment, never on the command line.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
    assert_clean(
        "the command line",
        &String::from_utf8_lossy(&cmdline),
        &[TOKEN, GEMINI_KEY, FakeOpenAi::API_KEY],
    );
    Agent {
        child,
        lines,
        readers,
        url: format!("http://{addr}"),
        log,
    }
}

fn read_lines(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(l) => into.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    })
}

impl Agent {
    async fn incidents(&self) -> Vec<Value> {
        reqwest::Client::new()
            .get(format!("{}/incidents?limit=100", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    }

    /// SIGTERM, then everything it wrote: (log lines, incident log file, /incidents answer).
    async fn stop(mut self, incidents: Vec<Value>) -> (Vec<String>, String, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = tokio::task::spawn_blocking(move || {
            let status = self.child.wait();
            for r in self.readers {
                let _ = r.join();
            }
            status
        })
        .await
        .unwrap()
        .unwrap();
        assert!(status.success(), "agent exit: {status}");
        let lines = self.lines.lock().unwrap().clone();
        let file = std::fs::read_to_string(&self.log).unwrap();
        (lines, file, serde_json::to_string(&incidents).unwrap())
    }
}

async fn heal_through(agent: &Agent) -> Vec<Value> {
    let r = reqwest::Client::new()
        .post(format!("{}/webhook", agent.url))
        .bearer_auth(TOKEN)
        .json(&webapp_alert())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let incidents = agent.incidents().await;
        if !incidents.is_empty() {
            return incidents;
        }
        assert!(Instant::now() < deadline, "no incident recorded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Neither secret, nor a recognisable part of one, anywhere.
fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        let middle = &secret[4..secret.len() - 4];
        assert!(
            !text.contains(middle),
            "{what} holds (part of) a secret:\n{}",
            text.lines()
                .filter(|l| l.contains(middle))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

async fn scenario(project: &Project, replica: &str, agent: Agent, key: &str) {
    let incidents = heal_through(&agent).await;
    let incident = &incidents[0];
    assert_eq!(incident["outcome"], "healed", "{incident:#}");
    assert_eq!(incident["mode"], "fallback", "{incident:#}");
    assert!(
        incident["llm"]["ended"]
            .as_str()
            .unwrap()
            .contains("[redacted]")
            || incident["fallback_reason"].is_string(),
        "{incident:#}"
    );
    project.wait_status(replica, "running", Duration::from_secs(10));
    let (lines, file, served) = agent.stop(incidents).await;
    assert!(
        lines.len() > 50 && lines.iter().any(|l| l.contains("\"level\":\"TRACE\"")),
        "RUST_LOG=trace was in force: {} lines",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| l.contains("model request failed")),
        "the failures were logged"
    );
    let all = lines.join("\n");
    assert_clean("the log", &all, &[key, TOKEN]);
    assert_clean("the incident log", &file, &[key, TOKEN]);
    assert_clean("/incidents", &served, &[key, TOKEN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn a_gemini_key_echoed_in_error_bodies_reaches_no_log_and_no_incident() {
    let p = Project::new("leakg");
    let web = p.add("webapp", 1, Replica::Healthy);
    p.kill(&web);
    let fake = FakeGemini::start_with(
        Brain::Script(leaky_script(GEMINI_KEY)),
        GeminiOptions {
            api_key: Some(GEMINI_KEY.into()),
            ..GeminiOptions::default()
        },
    )
    .await;
    let agent = start_agent(
        &p.name,
        &[
            ("LLM_PROVIDER", "gemini"),
            ("GEMINI_API_KEY", GEMINI_KEY),
            ("GEMINI_BASE_URL", fake.url()),
        ],
    );
    scenario(&p, &web, agent, GEMINI_KEY).await;
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 500, 429, 200], "every leaky reply was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker daemon"]
async fn an_openai_key_echoed_in_error_bodies_reaches_no_log_and_no_incident() {
    let p = Project::new("leako");
    let web = p.add("webapp", 1, Replica::Healthy);
    p.kill(&web);
    let key = FakeOpenAi::API_KEY;
    let fake = FakeOpenAi::start(leaky_script(key)).await;
    let agent = start_agent(
        &p.name,
        &[
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_API_KEY", key),
            ("OPENAI_BASE_URL", fake.url()),
            ("OPENAI_MODEL", "gpt-test"),
        ],
    );
    scenario(&p, &web, agent, key).await;
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 500, 429, 200], "every leaky reply was sent");
}
