//! Steady load through nginx, as the stack's Locust users make it: each user is one keep-alive
//! connection sending `GET /`, pausing between requests. Every request is kept (when it started,
//! how long it took, what came back), so failures can be placed on the stop/start timeline.
//!
//! Optionally every Nth request is a `POST /`: nginx passes a GET that a replica failed after
//! receiving it to another replica, but never a POST (non-idempotent), so POSTs show what a
//! replica cut mid-request costs. The webapp has no POST route: its 405 is the replica's answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::docker::now;

/// A user's request gives up after this long (nginx's own timeouts are far shorter).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 200 with a full body, from the replica named in `X-Served-By`.
    Ok(String),
    /// Any other status: nginx's 502/504 when it found no replica to answer.
    Status(u16),
    /// No answer: connection refused or reset, timeout, body cut short.
    Transport(String),
}

impl Outcome {
    pub fn failed(&self) -> bool {
        !matches!(self, Outcome::Ok(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Method {
    Get,
    Post,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub method: Method,
    /// Seconds since the epoch when the request was sent.
    pub at: f64,
    pub latency_s: f64,
    pub outcome: Outcome,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    users: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts `users` users against `url`, each pausing `pause` between requests; with
    /// `post_every` n > 0, a user's every nth request is a POST.
    pub fn start(
        url: &str,
        users: usize,
        pause: Duration,
        post_every: usize,
    ) -> anyhow::Result<Load> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::with_capacity(users);
        for i in 0..users {
            // One client per user: its own connection to nginx, as separate browsers have.
            let client = reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .pool_max_idle_per_host(1)
                .build()?;
            let (url, stop) = (url.to_string(), stop.clone());
            handles.push(tokio::spawn(async move {
                // Spread the users over one pause, so they do not arrive in lockstep.
                tokio::time::sleep(pause.mul_f64(i as f64 / users.max(1) as f64)).await;
                let mut samples = Vec::new();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let method = if post_every > 0 && n % post_every == 0 {
                        Method::Post
                    } else {
                        Method::Get
                    };
                    samples.push(one_request(&client, &url, method).await);
                    tokio::time::sleep(pause).await;
                }
                samples
            }));
        }
        Ok(Load {
            stop,
            users: handles,
        })
    }

    /// Stops every user after its current request; all samples, in the order they were sent.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for user in self.users {
            all.extend(user.await.expect("load user panicked"));
        }
        all.sort_by(|a, b| a.at.total_cmp(&b.at));
        all
    }
}

async fn one_request(client: &reqwest::Client, url: &str, method: Method) -> Sample {
    let at = now();
    let started = Instant::now();
    let (request, answered) = match method {
        Method::Get => (client.get(url), 200),
        Method::Post => (client.post(url).body("drain-check"), 405),
    };
    let outcome = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let served_by = response
                .headers()
                .get("x-served-by")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            match response.bytes().await {
                Ok(_) if status == answered => Outcome::Ok(served_by),
                Ok(_) => Outcome::Status(status),
                Err(e) => Outcome::Transport(kind(&e)),
            }
        }
        Err(e) => Outcome::Transport(kind(&e)),
    };
    Sample {
        method,
        at,
        latency_s: started.elapsed().as_secs_f64(),
        outcome,
    }
}

fn kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else if e.is_body() || e.is_decode() {
        "body cut short".into()
    } else {
        // The innermost cause names it best ("connection reset by peer", ...).
        let mut source: &dyn std::error::Error = e;
        while let Some(inner) = source.source() {
            source = inner;
        }
        source.to_string()
    }
}

/// Failed requests by method and what went wrong, e.g. `{"GET 502": 3, "POST connect": 1}`.
pub fn failures_by_kind<'a>(samples: impl Iterator<Item = &'a Sample>) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for s in samples {
        let what = match &s.outcome {
            Outcome::Ok(_) => continue,
            Outcome::Status(code) => code.to_string(),
            Outcome::Transport(kind) => kind.clone(),
        };
        let key = format!("{:?} {what}", s.method).to_uppercase();
        *by.entry(key).or_default() += 1;
    }
    by
}
