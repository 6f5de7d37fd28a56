//! Shared by the integration tests: start the real app on port 0 and read its metrics.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use webapp::{Application, Config, StartError};

pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), StartError>>,
}

pub async fn spawn_app(leak_bytes_per_request: usize) -> TestApp {
    spawn_with(Config {
        leak_bytes_per_request,
        ..test_config()
    })
    .await
}

/// The config `spawn_app` starts with: loopback, ports picked by the OS.
pub fn test_config() -> Config {
    Config {
        bind_addr: "127.0.0.1".parse().unwrap(),
        port: 0,
        metrics_port: 0,
        instance: "test-replica".to_owned(),
        ..Config::default()
    }
}

pub async fn spawn_with(config: Config) -> TestApp {
    let app = Application::build(config).await.expect("app starts");
    let (addr, metrics_addr) = (app.app_addr(), app.metrics_addr());
    assert_ne!(addr.port(), 0);
    assert_ne!(metrics_addr.port(), 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        metrics_addr,
        client: reqwest::Client::new(),
        stop: Some(stop),
        server,
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .expect("request answered")
    }

    pub async fn scrape(&self) -> String {
        let response = self
            .client
            .get(format!("http://{}/metrics", self.metrics_addr))
            .send()
            .await
            .expect("metrics answered");
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// The value of one series, `None` when it is absent.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_value(&self.scrape().await, name, labels)
    }

    /// Triggers graceful shutdown and waits for both servers to finish.
    pub async fn shutdown(mut self) -> Result<(), StartError> {
        self.begin_shutdown();
        self.stopped().await
    }

    /// What SIGTERM does: the server starts draining; [`TestApp::stopped`] waits for the end.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn stopped(self) -> Result<(), StartError> {
        self.server.await.expect("server task did not panic")
    }
}

/// Finds `name{labels} value` in the Prometheus text format; labels must match exactly.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let mut have: Vec<String> = series_labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            have.sort();
            (series_name == name && have == want).then(|| value.parse().ok())?
        })
}

/// Resident set size of this test process, from /proc/self/statm (pages).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * page_size()
}

fn page_size() -> u64 {
    // The kernel reports it to every process in the aux vector; /proc/self/smaps
    // shows it without needing libc.
    std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .and_then(|smaps| {
            smaps.lines().find_map(|line| {
                let kb = line
                    .strip_prefix("KernelPageSize:")?
                    .trim()
                    .strip_suffix("kB")?;
                kb.trim().parse::<u64>().ok()
            })
        })
        .map_or(4096, |kb| kb * 1024)
}
