//! The load generator: C keep-alive connections POSTing an Alertmanager payload until N requests
//! are done or the time limit passes, while the agent's resident memory is sampled.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::agent::{rss_kib, TOKEN};

/// A firing Alertmanager webhook (version 4) with four alerts about `service`, about 2 KB.
pub fn payload(service: &str) -> Vec<u8> {
    let starts_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let alert = |name: &str, instance: &str, summary: &str| {
        json!({
            "status": "firing",
            "labels": {
                "alertname": name, "service": service, "severity": "critical",
                "instance": instance, "job": "webapp", "compose_project": crate::agent::PROJECT,
            },
            "annotations": {
                "summary": summary,
                "description": format!("{summary} on {instance}; the healing agent should act."),
                "runbook_url": "https://runbooks.example.com/webapp",
            },
            "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": format!("http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22webapp%22%7D&alert={name}"),
            "fingerprint": format!("{:016x}", instance.len() * 7919 + name.len()),
        })
    };
    let body = json!({
        "version": "4",
        "groupKey": format!("{{}}:{{service=\"{service}\"}}"),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "healing-agent",
        "groupLabels": { "service": service },
        "commonLabels": { "service": service, "severity": "critical", "job": "webapp" },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            alert("WebappDown", "webapp-1:8080", "Replica webapp-1 is down"),
            alert("WebappDown", "webapp-2:8080", "Replica webapp-2 is down"),
            alert("WebappHighMemory", "webapp-1:8080", "Replica webapp-1 uses over 90% of its memory limit"),
            alert("WebappHighErrorRate", "nginx:80", "Over 5% of requests to webapp fail"),
        ],
    });
    serde_json::to_vec(&body).expect("payload serialises")
}

pub struct BurstSpec {
    pub requests: usize,
    pub concurrency: usize,
    pub max_duration: Duration,
}

#[derive(Debug, Serialize)]
pub struct BurstResult {
    pub requests: usize,
    pub ok: usize,
    /// Non-2xx answers plus transport errors (connection refused/reset, timeouts).
    pub errors: usize,
    pub duration_s: f64,
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub rss_peak_kib: u64,
}

/// Runs one burst against `url`, sampling the agent's VmRSS every 50 ms.
pub async fn burst(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    pid: u32,
    spec: &BurstSpec,
) -> BurstResult {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let done = done.clone();
        async move {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak.max(rss_kib(pid).unwrap_or(0))
        }
    });

    let next = Arc::new(AtomicUsize::new(0));
    // A 2 KB copy per request is noise next to an HTTP round trip (reqwest::Body is not Clone).
    let body: Arc<[u8]> = body.into();
    let started = Instant::now();
    let deadline = started + spec.max_duration;
    let workers: Vec<_> = (0..spec.concurrency)
        .map(|_| {
            let (http, url, body, next) =
                (http.clone(), url.to_string(), body.clone(), next.clone());
            let total = spec.requests;
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0usize);
                while next.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = match http
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/json")
                        .body(body.to_vec())
                        .send()
                        .await
                    {
                        // Read the body so the connection goes back to the pool.
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    latencies.push(t.elapsed());
                    errors += usize::from(!ok);
                }
                (latencies, errors)
            })
        })
        .collect();

    let (mut latencies, mut errors) = (Vec::with_capacity(spec.requests), 0);
    for w in workers {
        let (l, e) = w.await.expect("load worker panicked");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let rss_peak_kib = sampler.await.expect("rss sampler panicked");

    latencies.sort_unstable();
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    BurstResult {
        requests: latencies.len(),
        ok: latencies.len() - errors,
        errors,
        duration_s: elapsed.as_secs_f64(),
        throughput_rps: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: ms(percentile(&latencies, 50.0)),
        p99_ms: ms(percentile(&latencies, 99.0)),
        max_ms: ms(latencies.last()),
        rss_peak_kib,
    }
}

/// Nearest-rank percentile of sorted samples: the smallest value with at least `p`% of the
/// samples at or below it. `None` when there are no samples.
pub fn percentile<T>(sorted: &[T], p: f64) -> Option<&T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(&50));
        assert_eq!(percentile(&v, 99.0), Some(&99));
        assert_eq!(percentile(&v, 100.0), Some(&100));
        assert_eq!(percentile(&v, 0.0), Some(&1));
        assert_eq!(percentile(&[7], 99.0), Some(&7));
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(&2));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }

    #[test]
    fn payload_is_a_realistic_size() {
        let p = payload("webapp");
        assert!((1500..3000).contains(&p.len()), "{} bytes", p.len());
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["alerts"].as_array().unwrap().len(), 4);
    }
}
