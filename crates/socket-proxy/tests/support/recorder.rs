//! A stand-in for dockerd on a Unix socket that records every byte it receives, connection by
//! connection, and answers enough like Docker 20.10 (API 1.41) for bollard to be content.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

pub const PROJECT: &str = "hs";
pub const SERVICE: &str = "webapp";

/// A container the stand-in knows.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: &'static str,
    pub id: String,
    pub project: &'static str,
    pub service: &'static str,
    pub running: bool,
}

/// The host as the stand-in shows it: two replicas of the healable service, a container named
/// like one but labelled for another project (a compose `container_name` elsewhere), another
/// project's replica, a non-healable service of the project, and a plain container.
pub fn containers() -> Vec<Container> {
    let c = |name, hex: char, project, service, running| Container {
        name,
        id: hex.to_string().repeat(64),
        project,
        service,
        running,
    };
    vec![
        c("hs-webapp-1", '1', PROJECT, SERVICE, true),
        c("hs-webapp-2", '2', PROJECT, SERVICE, false),
        c("hs-webapp-7", '7', "other", SERVICE, false),
        c("other-webapp-1", 'a', "other", SERVICE, false),
        c("hs-db-1", 'd', PROJECT, "db", false),
        c("decoy", 'e', "", "", false),
    ]
}

pub fn id_of(name: &str) -> String {
    containers()
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.id)
        .expect("a known container")
}

/// (order of acceptance, bytes) per connection.
type Seen = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

pub struct Recorder {
    pub path: PathBuf,
    seen: Seen,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl Recorder {
    pub async fn start(dir: &Path) -> Recorder {
        let path = dir.join("docker.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind the recording socket");
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, o, a) = (seen.clone(), open.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                o.fetch_add(1, Ordering::SeqCst);
                let seq = a.fetch_add(1, Ordering::SeqCst);
                let (s, o) = (s.clone(), o.clone());
                tokio::spawn(async move {
                    let bytes = serve(stream).await;
                    s.lock().unwrap().push((seq, bytes));
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Recorder {
            path,
            seen,
            open,
            accepted,
        }
    }

    /// Waits until no connection is open or being opened, then returns (and forgets) everything
    /// received since the last call, one entry per connection, in the order they were opened.
    pub async fn take(&self) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut quiet_since = Instant::now();
        let mut last = self.accepted.load(Ordering::SeqCst);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let now = self.accepted.load(Ordering::SeqCst);
            if now != last || self.open.load(Ordering::SeqCst) > 0 {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() > Duration::from_millis(15) {
                break;
            }
        }
        let mut seen = std::mem::take(&mut *self.seen.lock().unwrap());
        seen.sort_by_key(|(seq, _)| *seq);
        seen.into_iter().map(|(_, bytes)| bytes).collect()
    }
}

/// Reads a request head, answers it, then keeps reading until the peer closes (or goes quiet),
/// so that a body or a second request sent after the head is recorded too.
async fn serve(mut s: UnixStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break Some(i + 4);
        }
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break None,
        }
    };
    if let Some(end) = head_end {
        let answer = respond(&buf[..end]);
        let _ = s.write_all(&answer).await;
        let _ = s.shutdown().await;
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(300), s.read(&mut chunk)).await
        {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    buf
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Docker-like answers: by path, ignoring the version prefix and the query.
fn respond(head: &[u8]) -> Vec<u8> {
    let line = String::from_utf8_lossy(head)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let path = match path.strip_prefix("/v1.") {
        Some(rest) => rest.split_once('/').map_or("", |(_, p)| p),
        None => path.trim_start_matches('/'),
    };
    let segs: Vec<&str> = path.split('/').collect();
    let all = containers();
    let find = |r: &str| {
        all.iter()
            .find(|c| c.name == r || c.id == r || (r.len() >= 4 && c.id.starts_with(r)))
            .cloned()
    };
    let ok = |ctype: &str, body: Vec<u8>| (200, ctype.to_string(), body);
    let (status, ctype, body) = match (method, segs.as_slice()) {
        (_, ["_ping"]) => ok("text/plain", b"OK".to_vec()),
        (_, ["version"]) => ok(
            "application/json",
            json!({"ApiVersion": "1.41", "MinAPIVersion": "1.12", "Version": "20.10.24"})
                .to_string()
                .into_bytes(),
        ),
        (_, ["containers", "json"]) => ok(
            "application/json",
            serde_json::Value::Array(
                all.iter()
                    .map(|c| {
                        json!({"Id": c.id, "Names": [format!("/{}", c.name)],
                           "Labels": labels(c), "State": if c.running { "running" } else { "exited" }})
                    })
                    .collect(),
            )
            .to_string()
            .into_bytes(),
        ),
        (_, ["events"]) => ok("application/json", Vec::new()),
        (_, ["containers", r, op]) => match find(r) {
            None => (
                404,
                "application/json".into(),
                json!({"message": format!("No such container: {r}")})
                    .to_string()
                    .into_bytes(),
            ),
            Some(c) => match *op {
                "json" => ok("application/json", inspect(&c).into_bytes()),
                "logs" => {
                    let line = b"log line from the replica\n";
                    let mut frame = vec![1, 0, 0, 0];
                    frame.extend_from_slice(&(line.len() as u32).to_be_bytes());
                    frame.extend_from_slice(line);
                    ok("application/vnd.docker.multiplexed-stream", frame)
                }
                "stats" => ok(
                    "application/json",
                    json!({"memory_stats": {"usage": 1234, "limit": 268435456}})
                        .to_string()
                        .into_bytes(),
                ),
                "start" if c.running => (304, String::new(), Vec::new()),
                _ => (204, String::new(), Vec::new()),
            },
        },
        _ => ok("application/json", b"{}".to_vec()),
    };
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        _ => "Not Found",
    };
    let mut out =
        format!("HTTP/1.1 {status} {reason}\r\nApi-Version: 1.41\r\nConnection: close\r\n");
    if !ctype.is_empty() {
        out.push_str(&format!("Content-Type: {ctype}\r\n"));
    }
    if status != 204 && status != 304 {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    out
}

fn labels(c: &Container) -> serde_json::Value {
    if c.project.is_empty() {
        return json!({});
    }
    json!({"com.docker.compose.project": c.project, "com.docker.compose.service": c.service})
}

/// What the label check and bollard's inspect read, plus an environment that must not get out.
fn inspect(c: &Container) -> String {
    json!({
        "Id": c.id,
        "Name": format!("/{}", c.name),
        "RestartCount": 0,
        "State": {"Status": if c.running { "running" } else { "exited" }, "Running": c.running,
                  "ExitCode": if c.running { 0 } else { 137 }, "OOMKilled": false,
                  "StartedAt": "2026-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"},
        "Config": {"Labels": labels(c), "Env": ["DATABASE_PASSWORD=canary-env-secret"]},
        "HostConfig": {"Memory": 268435456},
        "NetworkSettings": {"Networks": {"hs_default": {"IPAddress": "10.0.0.2"}}}
    })
    .to_string()
}
