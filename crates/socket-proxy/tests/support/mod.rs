//! The conformance harness: the recording upstream, the proxy under test in front of it, and a
//! client that sends raw bytes.
//!
//! The proxy under test is this crate's, in-process, unless `PROXY_CMD` names another: a shell
//! command in which `{socket}` (the recording upstream's Unix socket) and `{port}` (a free TCP
//! port on 127.0.0.1 to listen on) are replaced, e.g. the HAProxy this crate replaced (its
//! configuration is in git history; Debian's `haproxy` package runs it):
//!
//! ```sh
//! gone=$(git log -1 --format=%h -- docker/socket-proxy/haproxy.cfg)   # the commit that removed it
//! git show "$gone^:docker/socket-proxy/haproxy.cfg" >/tmp/old-haproxy.cfg
//! PROXY_CMD='sed -e "s#/var/run/docker.sock#{socket}#; s#bind :2375#bind 127.0.0.1:{port}#" \
//!   /tmp/old-haproxy.cfg >/tmp/h-{port}.cfg && exec haproxy -db -q -f /tmp/h-{port}.cfg' \
//!   cargo test -p socket-proxy --test conformance -- --nocapture --test-threads 1
//! ```
#![allow(dead_code)]

pub mod oracle;
pub mod recorder;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket_proxy::upstream::Upstream;
use socket_proxy::{Proxy, Scope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use recorder::{Recorder, PROJECT, SERVICE};

pub struct Harness {
    pub upstream: Recorder,
    pub proxy: SocketAddr,
    /// Which proxy: "socket-proxy (in-process)" or the `PROXY_CMD`.
    pub under_test: String,
    child: Option<std::process::Child>,
    dir: PathBuf,
}

impl Harness {
    /// The proxy under test: `PROXY_CMD`'s, or this crate's.
    pub async fn start(tag: &str) -> Harness {
        let cmd = std::env::var("PROXY_CMD")
            .ok()
            .filter(|c| !c.trim().is_empty());
        Self::start_with(tag, cmd).await
    }

    /// This crate's proxy, whatever `PROXY_CMD` says.
    pub async fn ours(tag: &str) -> Harness {
        Self::start_with(tag, None).await
    }

    async fn start_with(tag: &str, cmd: Option<String>) -> Harness {
        let dir = std::env::temp_dir().join(format!("socket-proxy-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let upstream = Recorder::start(&dir).await;
        match cmd {
            Some(cmd) => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let cmd = cmd
                    .replace("{socket}", &upstream.path.display().to_string())
                    .replace("{port}", &port.to_string());
                let child = std::process::Command::new("sh")
                    .args(["-c", &cmd])
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("PROXY_CMD starts");
                let proxy = SocketAddr::from(([127, 0, 0, 1], port));
                let deadline = Instant::now() + Duration::from_secs(10);
                while TcpStream::connect(proxy).await.is_err() {
                    assert!(
                        Instant::now() < deadline,
                        "PROXY_CMD did not listen on {proxy}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Harness {
                    upstream,
                    proxy,
                    under_test: cmd,
                    child: Some(child),
                    dir,
                }
            }
            None => {
                let scope = Scope::new(PROJECT, &[SERVICE.to_string()]).unwrap();
                let proxy = Arc::new(Proxy::new(scope, Upstream::new(upstream.path.clone())));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(socket_proxy::run(proxy, listener, std::future::pending()));
                Harness {
                    upstream,
                    proxy: addr,
                    under_test: "socket-proxy (this crate, in-process)".into(),
                    child: None,
                    dir,
                }
            }
        }
    }

    /// Sends `bytes` on a fresh connection and returns what came back (until the proxy closes,
    /// or goes quiet), then everything the upstream received meanwhile, per connection.
    pub async fn exchange(&self, bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let answer = send_raw(self.proxy, bytes).await;
        let seen = self.upstream.take().await;
        (answer, seen)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return b"(connection refused)".to_vec();
    };
    // A proxy may refuse and close before the whole request is written: not an error here.
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let idle = if out.is_empty() {
            Duration::from_millis(1500)
        } else {
            Duration::from_millis(250)
        };
        let left = deadline.saturating_duration_since(Instant::now()).min(idle);
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    out
}

/// The status line of an HTTP/1 answer, or what the answer was instead.
pub fn status_of(answer: &[u8]) -> String {
    if answer.is_empty() {
        return "closed, no answer".into();
    }
    if answer.starts_with(b"HTTP/1.") {
        let line = answer.split(|b| *b == b'\r').next().unwrap_or(b"");
        return String::from_utf8_lossy(&line[..line.len().min(40)]).to_string();
    }
    if answer.len() >= 9 && answer[3] == 0x4 {
        return "HTTP/2 frames".into();
    }
    format!("other: {}", oracle::show(answer))
}
