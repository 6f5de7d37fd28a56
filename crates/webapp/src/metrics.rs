//! Every Prometheus metric the app exports, in one non-global `Registry`
//! (tests run several apps in one process).

use std::path::Path;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The route label for requests no route matched: a fixed value, never the raw path.
pub const OTHER_ROUTE: &str = "other";

/// Latency buckets in seconds: a 1 MiB leak takes well under a millisecond,
/// so the defaults (starting at 5 ms) would put nearly everything in one bucket.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Limits at or above this mean "unlimited": cgroup v1 writes a huge page-rounded
/// `i64::MAX` instead of v2's literal "max".
const UNLIMITED_THRESHOLD: u64 = 1 << 60;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    leaked_bytes: IntGauge,
    memory_limit_bytes: IntGauge,
}

impl Metrics {
    /// Registers every metric, the process collector included, and sets
    /// `webapp_memory_limit_bytes` from the cgroup of this process.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer an HTTP request",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )?;
        let leaked_bytes = IntGauge::new(
            "webapp_leaked_bytes",
            "Bytes deliberately leaked so far by GET /",
        )?;
        let memory_limit_bytes = IntGauge::new(
            "webapp_memory_limit_bytes",
            "Memory limit of this container's cgroup in bytes; 0 means unlimited or unknown",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(leaked_bytes.clone()))?;
        registry.register(Box::new(memory_limit_bytes.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        let limit = cgroup_memory_limit(Path::new("/sys/fs/cgroup")).unwrap_or(0);
        memory_limit_bytes.set(i64::try_from(limit).unwrap_or(0));

        Ok(Self {
            registry,
            requests,
            duration,
            leaked_bytes,
            memory_limit_bytes,
        })
    }

    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    pub fn set_leaked_bytes(&self, total: u64) {
        self.leaked_bytes
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }

    pub fn memory_limit_bytes(&self) -> i64 {
        self.memory_limit_bytes.get()
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }

    pub fn content_type() -> String {
        TextEncoder::new().format_type().to_owned()
    }
}

/// The memory limit of the cgroup mounted at `root`, `None` when unlimited or
/// unreadable. Tries cgroup v2 `memory.max`, then v1 `memory/memory.limit_in_bytes`.
pub fn cgroup_memory_limit(root: &Path) -> Option<u64> {
    ["memory.max", "memory/memory.limit_in_bytes"]
        .iter()
        .find_map(|file| std::fs::read_to_string(root.join(file)).ok())
        .and_then(|text| parse_memory_limit(&text))
}

fn parse_memory_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    text.parse::<u64>()
        .ok()
        .filter(|&bytes| bytes > 0 && bytes < UNLIMITED_THRESHOLD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits() {
        assert_eq!(parse_memory_limit("268435456\n"), Some(256 << 20));
        assert_eq!(parse_memory_limit("max\n"), None);
        assert_eq!(parse_memory_limit("9223372036854771712\n"), None);
        assert_eq!(parse_memory_limit("garbage"), None);
    }

    #[test]
    fn prefers_v2_then_falls_back_to_v1() {
        let root = std::env::temp_dir().join(format!("webapp-cgroup-{}", std::process::id()));
        std::fs::create_dir_all(root.join("memory")).unwrap();
        assert_eq!(cgroup_memory_limit(&root), None);
        std::fs::write(root.join("memory/memory.limit_in_bytes"), "1048576\n").unwrap();
        assert_eq!(cgroup_memory_limit(&root), Some(1 << 20));
        std::fs::write(root.join("memory.max"), "2097152\n").unwrap();
        assert_eq!(cgroup_memory_limit(&root), Some(2 << 20));
        std::fs::write(root.join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_memory_limit(&root), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn renders_labelled_requests_and_process_metrics() {
        let metrics = Metrics::new().unwrap();
        metrics.observe_request("/health", 200, Duration::from_millis(1));
        metrics.set_leaked_bytes(42);
        let text = metrics.render().unwrap();
        assert!(text.contains(r#"http_requests_total{route="/health",status="200"} 1"#));
        assert!(text.contains("webapp_leaked_bytes 42"));
        assert!(text.contains("webapp_memory_limit_bytes "));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes "));
    }
}
