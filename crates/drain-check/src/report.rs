//! One run's figures (written as JSON) and the table that sets runs side by side.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::load::{failures_by_kind, Method, Outcome, Sample};
use crate::nginx_log::NginxView;

/// One replica taken out and brought back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cycle {
    pub replica: String,
    /// What reached the process: 15 (SIGTERM, `docker stop`), 9 (SIGKILL).
    pub signal: Option<i64>,
    /// A SIGTERM ignored until the stop timeout shows here as a second signal, 9.
    pub then_signal: Option<i64>,
    pub exit_code: Option<i64>,
    /// From the signal to the process's exit (Docker's `kill` and `die` events).
    pub to_exit_ms: f64,
    /// From the signal to the healthcheck passing again after `docker start`.
    pub to_healthy_ms: f64,
    /// From `docker start` to the healthcheck passing.
    pub start_to_healthy_ms: f64,
    /// Requests in flight between the signal and healthy again that failed.
    pub failed: usize,
    pub requests: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Spread {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        Spread {
            p50: percentile(values, 50.0).unwrap_or(0.0),
            p95: percentile(values, 95.0).unwrap_or(0.0),
            max: percentile(values, 100.0).unwrap_or(0.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub label: String,
    /// `stop` (SIGTERM, then SIGKILL after the stop timeout) or `kill` (SIGKILL).
    pub action: String,
    pub stop_timeout_s: Option<u64>,
    pub replicas: usize,
    pub users: usize,
    pub duration_s: f64,
    pub requests: usize,
    /// Requests users saw fail (no answer from a replica: nginx's 5xx, or nothing).
    pub failed: usize,
    /// Of all requests, the POSTs, and how many of those failed.
    pub posts: usize,
    pub posts_failed: usize,
    pub failures: BTreeMap<String, usize>,
    pub nginx: NginxView,
    /// Latency of every request, in milliseconds.
    pub latency_ms: Spread,
    pub p99_latency_ms: f64,
    pub to_exit_ms: Spread,
    pub to_healthy_ms: Spread,
    pub served_by: BTreeMap<String, usize>,
    pub cycles: Vec<Cycle>,
}

/// Nearest-rank percentile (`p` in 0..=100); `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// Requests in flight at some moment of `[from, to]` (a request sent just before a kill is cut
/// by it), and how many of them failed.
pub fn failed_between(samples: &[Sample], from: f64, to: f64) -> (usize, usize) {
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at <= to && s.at + s.latency_s >= from)
        .collect();
    let failed = window.iter().filter(|s| s.outcome.failed()).count();
    (window.len(), failed)
}

pub struct Run<'a> {
    pub label: String,
    pub action: &'a str,
    pub stop_timeout_s: Option<u64>,
    pub replicas: usize,
    pub users: usize,
    pub samples: &'a [Sample],
    pub nginx: NginxView,
    pub cycles: Vec<Cycle>,
    /// Container hostname (what `X-Served-By` says) to container name.
    pub names: BTreeMap<String, String>,
}

pub fn summarise(run: Run<'_>) -> Summary {
    let samples = run.samples;
    let ms: Vec<f64> = samples.iter().map(|s| s.latency_s * 1e3).collect();
    let mut served_by = BTreeMap::new();
    for s in samples {
        if let Outcome::Ok(host) = &s.outcome {
            let name = run.names.get(host).unwrap_or(host).clone();
            *served_by.entry(name).or_default() += 1;
        }
    }
    let duration_s = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => b.at + b.latency_s - a.at,
        _ => 0.0,
    };
    let exits: Vec<f64> = run.cycles.iter().map(|c| c.to_exit_ms).collect();
    let healthy: Vec<f64> = run.cycles.iter().map(|c| c.to_healthy_ms).collect();
    Summary {
        label: run.label,
        action: run.action.to_string(),
        stop_timeout_s: run.stop_timeout_s,
        replicas: run.replicas,
        users: run.users,
        duration_s,
        requests: samples.len(),
        failed: samples.iter().filter(|s| s.outcome.failed()).count(),
        posts: samples.iter().filter(|s| s.method == Method::Post).count(),
        posts_failed: samples
            .iter()
            .filter(|s| s.method == Method::Post && s.outcome.failed())
            .count(),
        failures: failures_by_kind(samples.iter()),
        nginx: run.nginx,
        latency_ms: Spread::of(&ms),
        p99_latency_ms: percentile(&ms, 99.0).unwrap_or(0.0),
        to_exit_ms: Spread::of(&exits),
        to_healthy_ms: Spread::of(&healthy),
        served_by,
        cycles: run.cycles,
    }
}

/// One run's figures for a terminal.
pub fn describe(s: &Summary) -> String {
    let mut out = format!(
        "{}: {} requests ({} POST) in {:.0} s from {} users, {} failed {:?}; nginx: {} failed, {} passed on to another replica, attempts that failed {:?}, {} of them cut after the request was sent\n\
         latency ms p50 {:.1} p99 {:.1} max {:.0}; signal to exit ms p50 {:.0} p95 {:.0}; signal to healthy ms p50 {:.0} p95 {:.0}\n",
        s.label, s.requests, s.posts, s.duration_s, s.users, s.failed, s.failures, s.nginx.failed,
        s.nginx.retried, s.nginx.upstream_errors, s.nginx.cut_after_sending, s.latency_ms.p50, s.p99_latency_ms,
        s.latency_ms.max, s.to_exit_ms.p50, s.to_exit_ms.p95, s.to_healthy_ms.p50,
        s.to_healthy_ms.p95,
    );
    for c in &s.cycles {
        out.push_str(&format!(
            "  {}: signal {:?}{} exit {:?} after {:.0} ms, healthy after {:.0} ms ({:.0} ms after start); {} of {} requests meanwhile failed\n",
            c.replica,
            c.signal,
            c.then_signal.map(|s| format!(" then {s}")).unwrap_or_default(),
            c.exit_code,
            c.to_exit_ms,
            c.to_healthy_ms,
            c.start_to_healthy_ms,
            c.failed,
            c.requests,
        ));
    }
    out
}

/// Runs side by side.
pub fn table(runs: &[Summary]) -> String {
    let mut out = format!(
        "{:<34} {:>8} {:>7} {:>11} {:>9} {:>8} {:>6} {:>8} {:>8} {:>15} {:>15} {}\n",
        "run",
        "requests",
        "failed",
        "POST failed",
        "nginx 5xx",
        "retried",
        "cut",
        "p99 ms",
        "max ms",
        "exit p50/p95 ms",
        "healthy p50/p95",
        "exit codes",
    );
    for s in runs {
        let codes: Vec<String> = s
            .cycles
            .iter()
            .map(|c| c.exit_code.map_or("?".into(), |c| c.to_string()))
            .collect();
        out.push_str(&format!(
            "{:<34} {:>8} {:>7} {:>11} {:>9} {:>8} {:>6} {:>8.1} {:>8.0} {:>15} {:>15} {}\n",
            s.label,
            s.requests,
            s.failed,
            format!("{}/{}", s.posts_failed, s.posts),
            s.nginx.failed,
            s.nginx.retried,
            s.nginx.cut_after_sending,
            s.p99_latency_ms,
            s.latency_ms.max,
            format!("{:.0}/{:.0}", s.to_exit_ms.p50, s.to_exit_ms.p95),
            format!("{:.0}/{:.0}", s.to_healthy_ms.p50, s.to_healthy_ms.p95),
            codes.join(","),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 50.0), Some(3.0));
        assert_eq!(percentile(&v, 95.0), Some(5.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn failures_are_placed_in_their_window() {
        let s = |at: f64, outcome: Outcome| Sample {
            method: Method::Get,
            at,
            latency_s: 0.001,
            outcome,
        };
        let samples = [
            s(1.0, Outcome::Ok("a".into())),
            s(2.0, Outcome::Status(502)),
            s(3.0, Outcome::Transport("connect".into())),
            s(4.0, Outcome::Ok("b".into())),
        ];
        assert_eq!(failed_between(&samples, 1.5, 3.5), (2, 2));
        assert_eq!(failed_between(&samples, 3.5, 9.0), (1, 0));
        // Sent before the window, still in flight when it opened.
        assert_eq!(failed_between(&samples, 2.0005, 2.5), (1, 1));
    }
}
